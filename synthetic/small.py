"""Deterministic generators of small genomic source files for the pipeline tests.

Every generator takes a seed and returns text (or bytes); the same seed always gives the same bytes.
Nothing here is checked in as a binary: BAM, bgzip and bigBed files are produced on the fly with the
real tools (``samtools view -b``, ``bgzip -c``, pybigtools). Records are deliberately unsorted, use
contigs whose byte order differs from their natural order (chr10 < chr2 < chrUn_… < chrX), contain
position ties, and, optionally, a contig longer than 2^29-1 (``GIANT``) whose records sit near
600,000,000 so that only a CSI index can hold them.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import random
import struct
import subprocess
import zipfile
from pathlib import Path

__all__ = [
    "BAM_ORDERS",
    "BINARY_KINDS",
    "CHROMS",
    "ENCODINGS",
    "GIANT",
    "LINE_VARIANTS",
    "bed_text",
    "bgzf_blocks",
    "bigbed_entries",
    "encode",
    "gff3_text",
    "gtf_text",
    "line_variant",
    "mislabelled_bytes",
    "sam_text",
    "truncate",
    "vcf_text",
    "with_field",
    "write_bam",
    "write_bigbed",
    "write_source",
]

# Header order (the order of @SQ / ##contig lines) is deliberately not the byte order.
CHROMS = {"chr1": 1_000_000, "chr2": 800_000, "chr10": 600_000, "chrX": 500_000, "chrUn_KI270742v1": 186_739}
GIANT = ("chrGiant", 700_000_000)  # longer than 2^29-1 = 536,870,911: BAI/TBI cannot index it
GIANT_WINDOW = (590_000_000, 610_000_000)  # records on the giant contig start in here

ENCODINGS = ("plain", "gzip", "bgzip")
LINE_VARIANTS = ("lf", "crlf", "no_final_newline", "trailing_empty_line")
BINARY_KINDS = ("starch", "bzip2", "xz", "zstd", "zip", "binary")
BAM_ORDERS = ("random", "coordinate", "contig_by_name", "unmapped_interleaved")

_CIGARS = (("100M", 100), ("50M200N50M", 300), ("60M5D40M", 105), ("30S70M", 70), ("40M2I58M", 98))


def _contigs(giant: bool) -> dict[str, int]:
    return {**CHROMS, GIANT[0]: GIANT[1]} if giant else dict(CHROMS)


def _start(rng: random.Random, chrom: str, length: int, span: int) -> int:
    """A 0-based start for a feature of ``span`` bases on ``chrom``."""
    if chrom == GIANT[0]:
        return rng.randrange(*GIANT_WINDOW)
    return rng.randrange(0, length - span - 1)


def _pick_chrom(rng: random.Random, contigs: dict[str, int], giant: bool) -> str:
    # With a giant contig, about a fifth of the records land on it.
    if giant and rng.random() < 0.2:
        return GIANT[0]
    return rng.choice(list(CHROMS))


# --- alignments ---------------------------------------------------------------------------------


def sam_text(seed: int, n: int = 1500, *, unmapped: int = 40, placed_unmapped: int = 30, giant: bool = False,
             order: str = "random", so: str | None = None, records: bool = True) -> str:
    """SAM text: @HD/@SQ/@RG/@PG header and ``n`` mapped reads (varied CIGARs, both strands, some
    exact position ties with opposite strands), ``placed_unmapped`` unmapped reads that carry a
    position, and ``unmapped`` reads with no coordinate at all (RNAME '*').

    ``order``:
      - ``random``: shuffled (unsorted);
      - ``coordinate``: correctly coordinate-sorted by header order (tid, pos) with no-coordinate
        reads last, but at equal positions reverse-strand reads come *before* forward ones, the
        opposite of what ``samtools sort`` produces, so a re-sort is observable;
      - ``contig_by_name``: sorted by (RNAME bytes, pos): every contig is one contiguous block and
        positions increase inside it (so it indexes), but the blocks are not in header order;
      - ``unmapped_interleaved``: coordinate order, except the no-coordinate reads sit in the middle.

    ``so`` is the @HD SO value (default: 'coordinate' for ``coordinate``, else 'unsorted'); pass
    'coordinate' with another order to make a header that lies. ``records=False`` gives the header only.
    """
    rng = random.Random(seed)
    contigs = _contigs(giant)
    names = list(contigs)
    so = so or ("coordinate" if order == "coordinate" else "unsorted")
    header = [f"@HD\tVN:1.6\tSO:{so}"]
    header += [f"@SQ\tSN:{c}\tLN:{length}" for c, length in contigs.items()]
    header += ["@RG\tID:rg1\tSM:sample1", "@PG\tID:fixture\tPN:genomic_fixtures\tVN:1"]
    if not records:
        return "\n".join(header) + "\n"

    def seq_qual() -> tuple[str, str]:
        return ("".join(rng.choice("ACGT") for _ in range(100)),
                "".join(chr(33 + rng.randrange(20, 41)) for _ in range(100)))

    rows: list[tuple[str, int, str, int, str, str, str, str]] = []  # qname flag rname pos cigar mapq seq qual
    for i in range(n):
        if rows and i % 7 == 0:  # an exact tie with an earlier read, on the other strand
            _, flag, chrom, pos, *_ = rng.choice([r for r in rows if not r[1] & 4])
            flag ^= 16
        else:
            chrom = _pick_chrom(rng, contigs, giant)
            pos = _start(rng, chrom, contigs[chrom], 400) + 1
            flag = rng.choice((0, 16))
        cigar, _ = rng.choice(_CIGARS)
        seq, qual = seq_qual()
        rows.append((f"read{i:05d}", flag, chrom, pos, cigar, str(rng.randrange(1, 61)), seq, qual))
    for i in range(placed_unmapped):  # unmapped, placed (e.g. next to its mapped mate)
        chrom = _pick_chrom(rng, contigs, giant)
        seq, qual = seq_qual()
        rows.append((f"placed{i:04d}", 4, chrom, _start(rng, chrom, contigs[chrom], 400) + 1, "*", "0", seq, qual))
    nocoor = []
    for i in range(unmapped):
        seq, qual = seq_qual()
        nocoor.append((f"unmapped{i:04d}", 4, "*", 0, "*", "0", seq, qual))

    rank = {c: k for k, c in enumerate(names)}
    if order == "random":
        rows += nocoor
        rng.shuffle(rows)
    elif order in ("coordinate", "unmapped_interleaved"):
        rows.sort(key=lambda r: (rank[r[2]], r[3], not r[1] & 16))  # reverse strand first at ties
        if order == "coordinate":
            rows += nocoor
        else:
            middle = len(rows) // 2
            rows[middle:middle] = nocoor
    elif order == "contig_by_name":
        rows.sort(key=lambda r: (r[2].encode(), r[3], not r[1] & 16))
        rows += nocoor
    else:
        raise ValueError(order)
    body = [f"{q}\t{f}\t{c}\t{p}\t{mq}\t{cg}\t*\t0\t0\t{s}\t{ql}\tRG:Z:rg1"
            for q, f, c, p, cg, mq, s, ql in rows]
    return "\n".join(header + body) + "\n"


def write_bam(sam: str, path: Path) -> Path:
    """``samtools view -b`` of the SAM text, records in the given order (never sorted here)."""
    subprocess.run(["samtools", "view", "--no-PG", "-b", "-o", str(path), "-"], input=sam.encode(), check=True,
                   capture_output=True)
    return path


# --- intervals ----------------------------------------------------------------------------------


def vcf_text(seed: int, n: int = 1500, *, giant: bool = False, records: bool = True) -> str:
    """VCF 4.2: meta lines, ##contig lines in header order, #CHROM line with one sample; unsorted
    records with SNVs and deletions (multi-base REF) and some position ties."""
    rng = random.Random(seed)
    contigs = _contigs(giant)
    header = ["##fileformat=VCFv4.2", "##fileDate=20240101", "##source=genomic_fixtures"]
    header += [f"##contig=<ID={c},length={length}>" for c, length in contigs.items()]
    header += [
        '##INFO=<ID=DP,Number=1,Type=Integer,Description="Total depth">',
        '##FILTER=<ID=q10,Description="Quality below 10">',
        '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
        "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tsample1",
    ]
    if not records:
        return "\n".join(header) + "\n"
    body: list[str] = []
    placed: list[tuple[str, int]] = []
    for i in range(n):
        if placed and i % 9 == 0:
            chrom, pos = rng.choice(placed)  # a second record at the same position
        else:
            chrom = _pick_chrom(rng, contigs, giant)
            pos = _start(rng, chrom, contigs[chrom], 10) + 1
            placed.append((chrom, pos))
        if rng.random() < 0.2:
            ref = "".join(rng.choice("ACGT") for _ in range(rng.randrange(2, 6)))
            alt = ref[0]
        else:
            ref, alt = rng.sample("ACGT", 2)
        flt = rng.choice(("PASS", "PASS", "q10"))
        gt = rng.choice(("0/1", "1/1", "0|1"))
        body.append(f"{chrom}\t{pos}\tvar{i}\t{ref}\t{alt}\t{rng.randrange(1, 99)}\t{flt}\tDP={rng.randrange(1, 99)}\tGT\t{gt}")
    return "\n".join(header + body) + "\n"


def gff3_text(seed: int, genes: int = 250, *, giant: bool = False, fasta: bool = True, records: bool = True) -> str:
    """GFF3: ##gff-version and ##sequence-region directives, '#' comments and '###' directives
    between (shuffled) gene groups of gene/mRNA/exon/CDS features, and a ##FASTA section at the end."""
    rng = random.Random(seed)
    contigs = _contigs(giant)
    lines = ["##gff-version 3"]
    lines += [f"##sequence-region {c} 1 {length}" for c, length in contigs.items()]
    lines.append("#!genome-build genomic_fixtures 1")
    groups: list[list[str]] = []
    for g in range(genes if records else 0):
        chrom = _pick_chrom(rng, contigs, giant)
        strand = rng.choice("+-")
        start = _start(rng, chrom, contigs[chrom], 20_000) + 1
        exons = []
        cursor = start
        for _ in range(rng.randrange(1, 5)):
            exon_start = cursor + rng.randrange(0, 2000)
            exon_end = exon_start + rng.randrange(50, 1500)
            exons.append((exon_start, exon_end))
            cursor = exon_end + 1
        end = exons[-1][1]
        group = [
            f"{chrom}\tfixture\tgene\t{start}\t{end}\t.\t{strand}\t.\tID=gene{g};Name=G{g};biotype=protein_coding",
            f"{chrom}\tfixture\tmRNA\t{start}\t{end}\t.\t{strand}\t.\tID=mrna{g};Parent=gene{g}",
        ]
        for k, (a, b) in enumerate(exons):
            group.append(f"{chrom}\tfixture\texon\t{a}\t{b}\t.\t{strand}\t.\tID=exon{g}.{k};Parent=mrna{g}")
            group.append(f"{chrom}\tfixture\tCDS\t{a}\t{b}\t{rng.uniform(0, 100):.1f}\t{strand}\t{k % 3}\tID=cds{g};Parent=mrna{g}")
        if g % 40 == 0:
            group.insert(0, f"# gene group {g}")
        if g % 25 == 24:
            group.append("###")
        groups.append(group)
    rng.shuffle(groups)
    for group in groups:
        lines += group
    if fasta:
        lines.append("##FASTA")
        for c in list(contigs)[:2]:
            lines.append(f">{c}")
            for _ in range(3):
                lines.append("".join(rng.choice("ACGTN") for _ in range(60)))
        # Looks like a feature line, but it sits inside the FASTA section: must be dropped too.
        lines.append("chr1\tfixture\tgene\t5\t50\t.\t+\t.\tID=inside_fasta")
    return "\n".join(lines) + "\n"


def gtf_text(seed: int, genes: int = 200, *, records: bool = True) -> str:
    """GTF (GENCODE-like): '#!' header comments, shuffled genes with gene, transcript and exon lines
    carrying gene_id/transcript_id/gene_name/exon_number attributes."""
    rng = random.Random(seed)
    lines = ["#!genome-build genomic_fixtures", "#!genome-version 1", "# generated for tests"]
    groups: list[list[str]] = []
    for g in range(genes if records else 0):
        chrom = rng.choice(list(CHROMS))
        strand = rng.choice("+-")
        gstart = rng.randrange(1, CHROMS[chrom] - 40_000)
        gene_attrs = f'gene_id "g{g}"; gene_name "G{g}"; gene_type "protein_coding";'
        tx_lines = []
        gend = gstart
        for t in range(rng.randrange(1, 3)):
            tid = f"g{g}.t{t}"
            cursor = gstart + rng.randrange(0, 500)
            exons = []
            for _ in range(rng.randrange(1, 5)):
                a = cursor + rng.randrange(0, 3000)
                b = a + rng.randrange(50, 1500)
                exons.append((a, b))
                cursor = b + 1
            tstart, tend = exons[0][0], exons[-1][1]
            gend = max(gend, tend)
            tx_attrs = f'gene_id "g{g}"; transcript_id "{tid}"; gene_name "G{g}";'
            tx_lines.append(f"{chrom}\tfixture\ttranscript\t{tstart}\t{tend}\t.\t{strand}\t.\t{tx_attrs}")
            for k, (a, b) in enumerate(exons, start=1):
                tx_lines.append(f'{chrom}\tfixture\texon\t{a}\t{b}\t.\t{strand}\t.\t{tx_attrs} exon_number "{k}";')
        groups.append([f"{chrom}\tfixture\tgene\t{gstart}\t{gend}\t.\t{strand}\t.\t{gene_attrs}", *tx_lines])
    rng.shuffle(groups)
    for group in groups:
        lines += group
    return "\n".join(lines) + "\n"


def bed_text(seed: int, n: int = 2000, *, kind: str = "bed", giant: bool = False, records: bool = True) -> str:
    """BED6, narrowPeak (BED6+4) or broadPeak (BED6+3): browser/track/'#' lines at the top and a
    second track line, a 'browser' line and a comment in the middle; unsorted records with ties."""
    rng = random.Random(seed)
    contigs = _contigs(giant)
    track_type = {"bed": "", "narrowPeak": " type=narrowPeak", "broadPeak": " type=broadPeak"}[kind]
    top = ["browser position chr1:1-10000", "browser hide all",
           f'track name="fixture {kind}" description="unsorted fixture"{track_type}',
           "# chrom\tstart\tend\tname\tscore\tstrand"]
    if not records:
        return "\n".join(top) + "\n"
    body: list[str] = []
    placed: list[tuple[str, int]] = []
    for i in range(n):
        if placed and i % 11 == 0:
            chrom, start = rng.choice(placed)
        else:
            chrom = _pick_chrom(rng, contigs, giant)
            start = _start(rng, chrom, contigs[chrom], 6000)
            placed.append((chrom, start))
        end = start + rng.randrange(1, 5000)
        fields = [chrom, str(start), str(end), f"{kind}{i}", str(rng.randrange(0, 1001)), rng.choice("+-.")]
        if kind == "narrowPeak":
            fields += [f"{rng.uniform(1, 50):.3f}", f"{rng.uniform(1, 20):.3f}", f"{rng.uniform(1, 20):.3f}",
                       str(rng.randrange(0, end - start))]
        elif kind == "broadPeak":
            fields += [f"{rng.uniform(1, 50):.3f}", f"{rng.uniform(1, 20):.3f}", f"{rng.uniform(1, 20):.3f}"]
        body.append("\t".join(fields))
    third = len(body) // 3
    body[third:third] = ["# a comment in the middle", f'track name="second {kind}"{track_type}']
    body[2 * third:2 * third] = ["browser dense all"]
    return "\n".join(top + body) + "\n"


def bigbed_entries(seed: int, n: int = 1500) -> tuple[dict[str, int], list[tuple[str, int, int, str]]]:
    """Chrom sizes and BED6 entries (chrom, start, end, 'name\\tscore\\tstrand'), sorted for writing."""
    rng = random.Random(seed)
    entries = []
    for i in range(n):
        chrom = rng.choice(list(CHROMS))
        start = rng.randrange(0, CHROMS[chrom] - 6000)
        entries.append((chrom, start, start + rng.randrange(1, 5000), f"bb{i}\t{rng.randrange(0, 1001)}\t{rng.choice('+-')}"))
    entries.sort(key=lambda e: (e[0].encode(), e[1], e[2], e[3]))
    return dict(CHROMS), entries


def write_bigbed(path: Path, seed: int, n: int = 1500) -> list[tuple[str, int, int, str]]:
    """Write a bigBed with pybigtools; returns the entries written."""
    import pybigtools

    chroms, entries = bigbed_entries(seed, n)
    # pybigtools picks the writer by extension: write as .bb, then move to the requested name.
    staged = path if path.suffix in (".bb", ".bigBed") else path.with_name(path.name + ".bb")
    writer = pybigtools.open(str(staged), "w")
    writer.write(chroms, entries)
    if staged != path:
        staged.rename(path)
    return entries


def with_field(text: str, line: int, column: int, value: str) -> str:
    """``text`` with tab-separated field ``column`` of line ``line`` (both 1-based) set to ``value``:
    one malformed record (``'abc'`` as a start, ``'-5'``, an end before the start) in a valid file."""
    lines = text.split("\n")
    fields = lines[line - 1].split("\t")
    fields[column - 1] = value
    lines[line - 1] = "\t".join(fields)
    return "\n".join(lines)


# --- encodings and line-ending variants ---------------------------------------------------------


def line_variant(text: str, variant: str) -> str:
    """``lf`` (as is), ``crlf``, ``no_final_newline`` or ``trailing_empty_line``."""
    assert text.endswith("\n")
    if variant == "lf":
        return text
    if variant == "crlf":
        return text.replace("\n", "\r\n")
    if variant == "no_final_newline":
        return text[:-1]
    if variant == "trailing_empty_line":
        return text + "\n"
    raise ValueError(variant)


def encode(data: str | bytes, encoding: str) -> bytes:
    """``plain`` bytes, ``gzip`` (one ordinary gzip member) or ``bgzip`` (``bgzip -c``)."""
    raw = data.encode() if isinstance(data, str) else data
    if encoding == "plain":
        return raw
    if encoding == "gzip":
        return gzip.compress(raw, mtime=0)
    if encoding == "bgzip":
        return subprocess.run(["bgzip", "-c"], input=raw, check=True, capture_output=True).stdout
    raise ValueError(encoding)


def write_source(path: Path, text: str, encoding: str = "plain", variant: str = "lf") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode(line_variant(text, variant), encoding))
    return path


# --- mislabelled binaries -----------------------------------------------------------------------


def _zstd_frame(payload: bytes) -> bytes:
    """A valid zstd frame made of raw (stored) blocks: magic, single-segment header, 4-byte size."""
    out = bytearray(b"\x28\xb5\x2f\xfd")
    out += bytes([0xA0]) + struct.pack("<I", len(payload))  # FCS_Field_Size=4, Single_Segment
    blocks = [payload[i:i + 65536] for i in range(0, len(payload), 65536)] or [b""]
    for k, block in enumerate(blocks):
        last = 1 if k == len(blocks) - 1 else 0
        header = last | (0 << 1) | (len(block) << 3)  # Block_Type 0 = raw
        out += header.to_bytes(3, "little") + block
    return bytes(out)


def mislabelled_bytes(kind: str, seed: int = 7) -> bytes:
    """Bytes that are not text intervals, whatever the catalog says: a BEDOPS starch archive
    (magic ca 5c ad e5), bzip2, xz, zstd or zip of a BED file, or an ELF binary (NUL bytes)."""
    bed = bed_text(seed, 300).encode()
    if kind == "starch":
        # starch v2: magic, then bzip2 streams per chromosome; the metadata trailer sits at the end.
        return b"\xca\x5c\xad\xe5" + bz2.compress(bed) + b'{"archive":{"type":"starch","version":{"major":2}}}'.ljust(8192, b" ")
    if kind == "bzip2":
        return bz2.compress(bed)
    if kind == "xz":
        return lzma.compress(bed, format=lzma.FORMAT_XZ)
    if kind == "zstd":
        return _zstd_frame(bed)
    if kind == "zip":
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(zipfile.ZipInfo("peaks.bed", date_time=(2024, 1, 1, 0, 0, 0)), bed)
        return buf.getvalue()
    if kind == "binary":
        rng = random.Random(seed)
        elf = b"\x7fELF\x02\x01\x01\x00" + b"\x00" * 8 + b"\x02\x00\x3e\x00\x01\x00\x00\x00"
        return elf + bytes(rng.randrange(256) for _ in range(4096))
    raise ValueError(kind)


# --- truncation ---------------------------------------------------------------------------------


def bgzf_blocks(data: bytes) -> list[int]:
    """Start offsets of the BGZF blocks of ``data`` (each block's size is in its 'BC' extra field)."""
    starts, pos = [], 0
    while pos + 18 <= len(data) and data[pos:pos + 4] == b"\x1f\x8b\x08\x04" and data[pos + 12:pos + 14] == b"BC":
        starts.append(pos)
        pos += struct.unpack("<H", data[pos + 16:pos + 18])[0] + 1
    return starts


def truncate(data: bytes, fraction: float) -> bytes:
    """``data`` cut inside a compressed block near ``fraction`` of its length (for BGZF: in the
    middle of the block that starts there, so the cut never falls on a clean block boundary)."""
    cut = int(len(data) * fraction)
    starts = bgzf_blocks(data)
    if len(starts) >= 2:
        k = max(1, min(len(starts) - 2, next((i for i, s in enumerate(starts) if s >= cut), len(starts) - 2)))
        cut = (starts[k] + starts[k + 1]) // 2
    return data[:cut]
