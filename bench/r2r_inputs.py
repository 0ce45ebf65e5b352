"""Inputs of bench/request_to_ready.py: the ~GB cases (generated once, cached with ``--keep``) and
their per-trial variants.

Cases: an unsorted BAM and the same reads coordinate-sorted, an unsorted narrowPeak-like BED and a
VCF 4.2 (8 fixed columns, ##contig lines in hg38 order), each also sorted exactly as
``LC_ALL=C sort -t$'\\t' -k1,1 -k2,2n`` outputs it (chr1, chr10, chr11, ...: what "already sorted"
means for the service's text pipeline), and, optionally, a VCF sorted in hg38 contig order (as
variant callers write them). BAM and BED come from ``synthetic.large`` with the seeds and file
names ``bench/pipelines.py`` uses, so this bench reuses that one's ``--keep`` cache.

A trial variant: the service's cache key is derived from the content only (``cfdb_assets.keys``:
checksum, format, family, output options, recipe), so every trial must present new bytes.
``TrialFile`` appends one trial-specific record at the end of an input (a copy of it, or the input
itself when it is not cached) and rewrites only that tail for the next trial: for text a clone of the
last line one position further on (so a sorted file stays sorted), for BAM a BGZF block holding one
unmapped read (unmapped reads sort last) followed by the EOF block. The md5 of a variant is the
base's running md5 (computed once) plus the tail, so the catalog can be written before the service
starts and a trial costs a few bytes of I/O instead of a copy, a store wipe or a restart.
"""

from __future__ import annotations

import hashlib
import itertools
import random
import shutil
import struct
import subprocess
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from synthetic.large import GB, HG38, bam_bytes_per_read, write_bam, write_bed

__all__ = ["CASES", "Case", "TrialFile", "prepare_input", "text_sort", "write_vcf"]

BAM_EOF = bytes.fromhex("1f8b08040000000000ff0600424302001b0003000000000000000000")


@dataclass(frozen=True)
class Case:
    name: str
    kind: str  # bam | bed | vcf
    fmt: tuple[str, str]  # catalog file_format (EDAM id, name)
    sorted: bool


CASES = {
    case.name: case
    for case in (
        Case("bam", "bam", ("format:2572", "BAM"), False),
        Case("bed", "bed", ("format:3003", "BED"), False),
        Case("bam-sorted", "bam", ("format:2572", "BAM"), True),
        Case("bed-sorted", "bed", ("format:3003", "BED"), True),
        Case("vcf-sorted", "vcf", ("format:3016", "VCF"), True),
        Case("vcf", "vcf", ("format:3016", "VCF"), False),
        Case("vcf-hg38", "vcf", ("format:3016", "VCF"), True),  # hg38 contig order: not C-sorted
    )
}


# --------------------------------------------------------------------------- VCF generator

_CONTIGS = list(HG38)
_CUM = list(itertools.accumulate(HG38.values()))
_ALTS = {"A": "CGT", "C": "AGT", "G": "ACT", "T": "ACG"}


def vcf_header() -> str:
    lines = ["##fileformat=VCFv4.2", "##source=cfdb-bench", "##reference=GRCh38"]
    lines += [f"##contig=<ID={name},length={length}>" for name, length in HG38.items()]
    lines += [
        '##FILTER=<ID=PASS,Description="All filters passed">',
        '##FILTER=<ID=LowQual,Description="Low quality">',
        '##INFO=<ID=DP,Number=1,Type=Integer,Description="Total depth">',
        '##INFO=<ID=AF,Number=A,Type=Float,Description="Allele frequency">',
        '##INFO=<ID=MQ,Number=1,Type=Float,Description="RMS mapping quality">',
        "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO",
    ]
    return "\n".join(lines) + "\n"


def vcf_chunk(rng: random.Random, first: int, n: int) -> str:
    """``n`` sites-only VCF records (SNVs, some deletions), in random order."""
    contigs = rng.choices(_CONTIGS, cum_weights=_CUM, k=n)
    rand, bits = rng.random, rng.getrandbits
    out = []
    for i in range(n):
        chrom = contigs[i]
        pos = int(rand() * (HG38[chrom] - 100)) + 1
        r = bits(32)
        ref = "ACGT"[r & 3]
        alt = _ALTS[ref][(r >> 2) % 3]
        if (r >> 4) & 7 == 0:  # a deletion: REF is two bases, ALT the first
            ref, alt = ref + alt, ref
        ident = f"rs{first + i}" if (r >> 7) & 1 else "."
        flt = "PASS" if (r >> 8) & 15 else "LowQual"
        out.append(
            f"{chrom}\t{pos}\t{ident}\t{ref}\t{alt}\t{rand() * 900 + 10:.1f}\t{flt}\t"
            f"DP={(r >> 12) % 200 + 5};AF={rand():.4f};MQ={50 + rand() * 10:.2f}\n"
        )
    return "".join(out)


def write_vcf(path: Path, rng: random.Random, target_bytes: int) -> int:
    """A VCF of about ``target_bytes``; returns the number of records."""
    lines = 0
    with open(path, "wb") as fh:
        written = fh.write(vcf_header().encode())
        while written < target_bytes:
            n = min(100_000, max(1000, (target_bytes - written) // 70))
            written += fh.write(vcf_chunk(rng, lines, n).encode("ascii"))
            lines += n
    return lines


# --------------------------------------------------------------------------- cached inputs


def text_sort(kind: str, source: str, memory: str, threads: int) -> str:
    """The C-locale coordinate sort (shell): BED as a whole, VCF with its header kept first."""
    sort = f"LC_ALL=C sort -t$'\\t' -k1,1 -k2,2n -S {memory} --parallel={threads}"
    if kind == "bed":
        return f"{sort} {source}"
    return f"(grep '^#' {source}; grep -v '^#' {source} | {sort})"


def prepare_input(case: Case, directory: Path, gb: float, seed: int, memory_mib: int, threads: int) -> Path:
    """The input of ``case`` in ``directory``, generated (atomically) unless already there."""
    stem = f"{gb:g}gb-seed{seed}"
    names = {
        "bam": f"reads-{stem}-unsorted.bam", "bam-sorted": f"reads-{stem}-sorted.bam",
        "bed": f"peaks-{stem}.bed", "bed-sorted": f"peaks-{stem}-csorted.bed",
        "vcf": f"variants-{stem}.vcf", "vcf-sorted": f"variants-{stem}-csorted.vcf",
        "vcf-hg38": f"variants-{stem}-hg38.vcf",
    }
    path = directory / names[case.name]
    if path.exists():
        return path
    directory.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    target = int(gb * GB)
    if case.name == "bam":
        reads = max(1000, round(target / bam_bytes_per_read(seed, directory)))
        write_bam(partial, random.Random(seed), reads)
    elif case.name == "bed":
        write_bed(partial, random.Random(seed + 2), target)
    elif case.name == "vcf":
        write_vcf(partial, random.Random(seed + 3), target)
    else:
        unsorted = prepare_input(CASES[case.kind] if case.name != "vcf-hg38" else CASES["vcf-sorted"],
                                 directory, gb, seed, memory_mib, threads)
        _sorted_copy(case, unsorted, partial, memory_mib, threads)
    partial.replace(path)
    return path


def _sorted_copy(case: Case, source: Path, out: Path, memory_mib: int, threads: int) -> None:
    if case.name == "vcf-hg38":
        _hg38_order(source, out)
        return
    scratch = Path(tempfile.mkdtemp(prefix="sort-", dir=out.parent))
    try:
        if case.kind == "bam":  # as bench/pipelines.py makes it
            cmd = (f"samtools sort --no-PG -@{threads} -m 768M -l 6 -T {scratch}/part -O bam "
                   f"-o {out} {source}")
        else:
            cmd = f"{text_sort(case.kind, str(source), f'{2 * memory_mib}M', threads)} > {out}"
        subprocess.run(["bash", "-o", "pipefail", "-c", cmd], check=True, stderr=subprocess.DEVNULL,
                       env={"PATH": "/usr/bin:/bin", "LC_ALL": "C", "TMPDIR": str(scratch)})
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _hg38_order(csorted: Path, out: Path) -> None:
    """Reorder the contig blocks of a C-sorted VCF into the header's (hg38) order."""
    blocks: dict[bytes, list[int]] = {}
    header_end = None
    with open(csorted, "rb") as fh:
        offset = 0
        for line in fh:
            if not line.startswith(b"#"):
                if header_end is None:
                    header_end = offset
                chrom = line.split(b"\t", 1)[0]
                blocks.setdefault(chrom, [offset, offset])[1] = offset + len(line)
            offset += len(line)
    with open(csorted, "rb") as src, open(out, "wb") as dst:
        _copy_range(src, dst, 0, header_end or 0)
        for chrom in HG38:
            if chrom.encode() in blocks:
                start, end = blocks[chrom.encode()]
                _copy_range(src, dst, start, end)


def _copy_range(src, dst, start: int, end: int) -> None:
    src.seek(start)
    left = end - start
    while left > 0:
        chunk = src.read(min(left, 8 << 20))
        dst.write(chunk)
        left -= len(chunk)


# --------------------------------------------------------------------------- trial variants


class TrialFile:
    """An input whose tail names the current trial (see the module docstring)."""

    def __init__(self, kind: str, source: Path, path: Path):
        self.kind, self.path = kind, path
        md5 = hashlib.md5()
        size = source.stat().st_size
        self.base_size = size - len(BAM_EOF) if kind == "bam" else size
        with open(source, "rb") as src, open(path, "r+b" if path == source else "wb") as dst:
            left = self.base_size
            while left > 0:
                chunk = src.read(min(left, 8 << 20))
                md5.update(chunk)
                if path != source:
                    dst.write(chunk)
                left -= len(chunk)
            if kind == "bam" and src.read() != BAM_EOF:
                raise ValueError(f"{source} does not end with the BGZF EOF block")
        self._md5 = md5
        self._last_line = None if kind == "bam" else _last_line(source, self.base_size)

    def tail(self, tag: str) -> bytes:
        if self.kind == "bam":
            return _bgzf_block(_unmapped_record(f"r2r-{tag}")) + BAM_EOF
        fields = self._last_line.rstrip(b"\n").split(b"\t")
        position = int(fields[1]) + 1
        fields[1] = str(position).encode()
        if self.kind == "bed":
            fields[2] = str(max(int(fields[2]), position + 1)).encode()
            if len(fields) > 3:
                fields[3] = f"r2r-{tag}".encode()
        else:
            fields[2] = f"r2r-{tag}".encode()
        return b"\t".join(fields) + b"\n"

    def digest(self, tag: str) -> tuple[str, int]:
        """(md5, size) of the file as ``use(tag)`` will leave it."""
        tail = self.tail(tag)
        md5 = self._md5.copy()
        md5.update(tail)
        return md5.hexdigest(), self.base_size + len(tail)

    def use(self, tag: str) -> None:
        with open(self.path, "r+b") as fh:
            fh.truncate(self.base_size)
            fh.seek(self.base_size)
            fh.write(self.tail(tag))


def _last_line(path: Path, size: int) -> bytes:
    with open(path, "rb") as fh:
        fh.seek(max(0, size - 65536))
        tail = fh.read(size - fh.tell())
    if not tail.endswith(b"\n"):
        raise ValueError(f"{path} does not end with a newline")
    return tail.rstrip(b"\n").rsplit(b"\n", 1)[-1] + b"\n"


def _unmapped_record(name: str) -> bytes:
    """One BAM record: an unplaced, unmapped read with no sequence (SEQ and QUAL '*')."""
    read_name = name.encode() + b"\0"
    # refID, pos, l_read_name, mapq, bin (reg2bin(-1, 0)), n_cigar_op, flag, l_seq,
    # next_refID, next_pos, tlen
    core = struct.pack("<iiBBHHHiiii", -1, -1, len(read_name), 0, 4680, 0, 4, 0, -1, -1, 0)
    body = core + read_name
    return struct.pack("<i", len(body)) + body


def _bgzf_block(data: bytes) -> bytes:
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    deflated = compressor.compress(data) + compressor.flush()
    header = struct.pack("<BBBBIBBHBBHH", 31, 139, 8, 4, 0, 0, 255, 6, 66, 67, 2, len(deflated) + 25)
    return header + deflated + struct.pack("<II", zlib.crc32(data), len(data))
