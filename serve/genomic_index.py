"""What an index and the start of a file say, read over ``read(start, end)`` (never the whole data
file): BGZF blocks, BAI/TBI/CSI indexes (per contig: the first record's virtual offset, the record
count and a bound of the data's end), the contigs of a BAM header, the lengths a VCF or GFF3 header
declares, the first record at a virtual offset, and the chromosome tree of a bigWig. Pure parsing.

Formats: the SAM specification (SAMv1 §4.2 BAM, §5.2 BAI, CSIv1, tabix) and UCSC's bbi files.
"""

from __future__ import annotations

import re
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["IndexFormatError", "IndexRef", "ParsedIndex", "Read", "bam_contigs", "bigwig_contigs",
           "declared_lengths", "first_record", "inflate", "parse_index"]

Read = Callable[[int, int], bytes]  # bytes [start, end) of a file (fewer at its end)

BLOCK_MAX = 1 << 16  # a BGZF block is at most 64 KiB, compressed or not
HEADER_LIMIT = 16 << 20  # compressed header bytes read at most
LINEAR_WINDOW = 1 << 14  # the width of a BAI/TBI linear-index window
BAI_PSEUDO_BIN = 37450
BIGWIG_MAGIC = 0x888FFC26
CHROM_TREE_MAGIC = 0x78CA8C91
CIGAR_REFERENCE_OPS = frozenset((0, 2, 3, 7, 8))  # M D N = X consume the reference
VCF_CONTIG = re.compile(rb"^##contig=<(.*)>\s*$")
GFF_REGION = re.compile(rb"^##sequence-region\s+(\S+)\s+\d+\s+(\d+)\s*$")


class IndexFormatError(ValueError):
    """The index, header or record is not what its format says (or is cut short)."""


@dataclass(frozen=True)
class IndexRef:
    """One contig of an index: where its first record is, how many it has, and a bound of its end."""

    first: int | None  # the smallest chunk-start virtual offset; None for a contig without data
    records: int | None  # from the pseudo-bin, when the indexer wrote one
    bound: int  # no record ends past this (0 when the index cannot tell)


@dataclass(frozen=True)
class ParsedIndex:
    """A parsed index: its contigs in file order; tabix indexes also name them and their columns."""

    kind: str  # bai, tbi or csi
    refs: tuple[IndexRef, ...]
    names: tuple[str, ...] | None  # tabix (TBI, tabix CSI) only; BAM contigs are in the BAM header
    columns: tuple[int, int, int, int, bytes] | None  # tabix: format, col_seq, col_beg, col_end, meta


class _Cursor:
    def __init__(self, data: bytes, pos: int = 0):
        self.data, self.pos = data, pos

    def take(self, fmt: str):
        try:
            values = struct.unpack_from(fmt, self.data, self.pos)
        except struct.error:
            raise IndexFormatError("The data ends early.") from None
        self.pos += struct.calcsize(fmt)
        return values[0] if len(values) == 1 else values

    def raw(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise IndexFormatError("The data ends early.")
        self.pos += n
        return self.data[self.pos - n : self.pos]


def inflate(data: bytes) -> bytes:
    """The bytes of consecutive BGZF blocks; an incomplete last block is left out."""
    out, pos = [], 0
    while pos + 18 <= len(data):
        if data[pos : pos + 2] != b"\x1f\x8b" or not data[pos + 3] & 4:
            raise IndexFormatError("Not BGZF: a block without the gzip magic and extra field.")
        xlen = struct.unpack_from("<H", data, pos + 10)[0]
        size, extra = None, _Cursor(data[pos + 12 : pos + 12 + xlen])
        while extra.pos + 4 <= xlen:
            tag, length = extra.raw(2), extra.take("<H")
            field = extra.raw(length)
            if tag == b"BC" and length == 2:
                size = struct.unpack("<H", field)[0] + 1
        if size is None:
            raise IndexFormatError("Not BGZF: a block without its size.")
        if pos + size > len(data):
            break
        try:
            out.append(zlib.decompress(data[pos + 12 + xlen : pos + size - 8], -15))
        except zlib.error as exc:
            raise IndexFormatError(f"A BGZF block does not inflate ({exc}).") from None
        pos += size
    return b"".join(out)


def parse_index(raw: bytes) -> ParsedIndex:
    """A BAI, TBI or CSI index (TBI and CSI are BGZF-compressed)."""
    data = inflate(raw) if raw[:2] == b"\x1f\x8b" else raw
    cur = _Cursor(data, 4)
    magic = data[:4]
    names = columns = None
    if magic == b"BAI\1":
        kind, pseudo, csi = "bai", BAI_PSEUDO_BIN, None
        n_ref = cur.take("<i")
    elif magic == b"TBI\1":
        kind, pseudo, csi = "tbi", BAI_PSEUDO_BIN, None
        n_ref = cur.take("<i")
        names, columns = _tabix_header(cur)
    elif magic == b"CSI\1":
        kind = "csi"
        min_shift, depth, l_aux = cur.take("<iii")
        csi = (min_shift, depth)
        pseudo = ((1 << ((depth + 1) * 3)) - 1) // 7 + 1
        if l_aux >= 28:
            names, columns = _tabix_header(_Cursor(cur.raw(l_aux)))
        else:
            cur.raw(l_aux)
        n_ref = cur.take("<i")
    else:
        raise IndexFormatError("Not a BAI, TBI or CSI index.")
    refs = tuple(_ref(cur, pseudo, csi) for _ in range(n_ref))
    if names is not None and len(names) != len(refs):
        raise IndexFormatError("The index names a different number of contigs than it indexes.")
    return ParsedIndex(kind, refs, names, columns)


def _tabix_header(cur: _Cursor) -> tuple[tuple[str, ...], tuple[int, int, int, int, bytes]]:
    fmt, col_seq, col_beg, col_end, meta, _skip, l_nm = cur.take("<7i")
    names = tuple(n.decode() for n in cur.raw(l_nm).split(b"\0") if n)
    return names, (fmt, col_seq, col_beg, col_end, bytes([meta & 0xFF]))


def _ref(cur: _Cursor, pseudo: int, csi: tuple[int, int] | None) -> IndexRef:
    first, records, bound = None, None, 0
    for _ in range(cur.take("<i")):
        bin_no = cur.take("<I")
        if csi:
            cur.take("<Q")  # loffset
        chunks = [cur.take("<QQ") for _ in range(cur.take("<i"))]
        if bin_no == pseudo:
            if len(chunks) == 2:
                records = chunks[1][0]
            continue
        if chunks:
            start = min(c[0] for c in chunks)
            first = start if first is None else min(first, start)
        if csi:
            bound = max(bound, _bin_end(bin_no, *csi))
    if not csi:
        n_intv = cur.take("<i")
        cur.raw(8 * n_intv)
        bound = n_intv * LINEAR_WINDOW
    return IndexRef(first, records, bound)


def _bin_end(bin_no: int, min_shift: int, depth: int) -> int:
    """The end of the genomic span of a CSI bin (binning scheme of CSIv1)."""
    level = 0
    while level < depth and ((1 << (3 * (level + 1))) - 1) // 7 <= bin_no:
        level += 1
    first_of_level = ((1 << (3 * level)) - 1) // 7
    return (bin_no - first_of_level + 1) << (min_shift + 3 * (depth - level))


def bam_contigs(read: Read) -> list[tuple[str, int]]:
    """The (name, length) of every reference sequence of a BAM header, in header order."""
    size = BLOCK_MAX
    while True:
        raw = read(0, size)
        try:
            cur = _Cursor(inflate(raw))
            if cur.raw(4) != b"BAM\1":
                raise ValueError("Not a BAM file.")
            cur.raw(cur.take("<i"))  # the SAM header text
            contigs = []
            for _ in range(cur.take("<i")):
                name = cur.raw(cur.take("<i")).rstrip(b"\0").decode()
                contigs.append((name, cur.take("<i")))
            return contigs
        except IndexFormatError:
            if len(raw) < size or size >= HEADER_LIMIT:
                raise IndexFormatError("The BAM header is cut short or too long.") from None
            size *= 4
        except ValueError as exc:
            raise IndexFormatError(str(exc)) from None


def declared_lengths(read: Read, before: int, meta: bytes) -> dict[str, int]:
    """Contig lengths the header lines of a tabix-indexed file declare (VCF ``##contig``, GFF3
    ``##sequence-region``); ``before`` is the first record's virtual offset."""
    end = min((before >> 16) + BLOCK_MAX, HEADER_LIMIT)
    lengths: dict[str, int] = {}
    for line in inflate(read(0, end)).split(b"\n"):
        if not line.startswith(meta):
            break
        if match := VCF_CONTIG.match(line):
            fields = dict(f.split(b"=", 1) for f in match.group(1).split(b",") if b"=" in f)
            if b"ID" in fields and fields.get(b"length", b"").isdigit():
                lengths[fields[b"ID"].decode()] = int(fields[b"length"])
        elif match := GFF_REGION.match(line):
            lengths[match.group(1).decode()] = int(match.group(2))
    return lengths


def first_record(read: Read, offset: int, columns: tuple[int, int, int, int, bytes] | None) -> tuple[int, int]:
    """(start, end), 0-based half-open, of the record at a virtual offset: a BAM record when
    ``columns`` is None, else a tabix line with those columns."""
    size = 2 * BLOCK_MAX
    while True:
        raw = read(offset >> 16, (offset >> 16) + size)
        data = inflate(raw)[offset & 0xFFFF :]
        try:
            return _bam_span(data) if columns is None else _line_span(data, columns)
        except IndexFormatError:
            if len(raw) < size or size >= HEADER_LIMIT:
                raise
            size *= 4


def _bam_span(data: bytes) -> tuple[int, int]:
    cur = _Cursor(data)
    _size, _ref_id, pos, l_name, _mapq, _bin, n_cigar, _flag, _l_seq = cur.take("<iiiBBHHHi")
    cur.take("<iii")
    cur.raw(l_name)
    span = sum(op >> 4 for op in (cur.take("<I") for _ in range(n_cigar)) if op & 0xF in CIGAR_REFERENCE_OPS)
    return pos, pos + max(span, 1)


def _line_span(data: bytes, columns: tuple[int, int, int, int, bytes]) -> tuple[int, int]:
    fmt, _col_seq, col_beg, col_end, _meta = columns
    line, newline, _ = data.partition(b"\n")
    if not newline:
        raise IndexFormatError("The first record is cut short.")
    fields = line.rstrip(b"\r").split(b"\t")
    try:
        begin = int(fields[col_beg - 1])
        start = begin if fmt & 0x10000 else begin - 1  # 0x10000: 0-based half-open (UCSC)
        if fmt & 0xFFFF == 2:  # VCF: the REF allele's span
            return start, start + max(len(fields[3]), 1)
        end = int(fields[col_end - 1]) if 0 < col_end != col_beg else start + 1
    except (IndexError, ValueError):
        raise IndexFormatError("The first record does not have the columns its index names.") from None
    return start, max(end, start + 1)


def bigwig_contigs(read: Read) -> list[tuple[str, int]]:
    """The (name, length) of every chromosome of a bigWig's chromosome tree, in id order."""
    head = read(0, 64)
    for order in ("<", ">"):
        if len(head) >= 16 and struct.unpack_from(f"{order}I", head)[0] == BIGWIG_MAGIC:
            break
    else:
        raise IndexFormatError("Not a bigWig file.")
    tree = struct.unpack_from(f"{order}Q", head, 8)[0]
    cur = _Cursor(read(tree, tree + 32))
    magic, _block, key_size, _val_size, count, _ = cur.take(f"{order}IIIIQQ")
    if magic != CHROM_TREE_MAGIC or count > 10_000_000:
        raise IndexFormatError("The bigWig chromosome tree is not where its header says.")
    found: list[tuple[int, str, int]] = []
    nodes = [tree + 32]
    while nodes:
        node = nodes.pop()
        is_leaf, _, n = _Cursor(read(node, node + 4)).take(f"{order}BBH")
        items = _Cursor(read(node + 4, node + 4 + n * (key_size + 8)))
        for _ in range(n):
            key = items.raw(key_size).rstrip(b"\0").decode()
            if is_leaf:
                chrom_id, length = items.take(f"{order}II")
                found.append((chrom_id, key, length))
            else:
                nodes.append(items.take(f"{order}Q"))
        if len(found) > count:
            raise IndexFormatError("The bigWig chromosome tree has more leaves than it counts.")
    return [(name, length) for _, name, length in sorted(found)]
