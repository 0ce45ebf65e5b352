"""GB-scale synthetic genomic inputs, streamed: realistic 150 bp reads on hg38 contigs (random bases,
NovaSeq-binned qualities, some soft clips and mismatches) and narrowPeak-like BED lines, in random
order. Used by ``bench/``; deterministic for a given ``random.Random`` seed."""

from __future__ import annotations

import random
import subprocess
from pathlib import Path

__all__ = ["GB", "HG38", "READ_LEN", "bam_bytes_per_read", "bed_chunk", "sam_chunk", "sam_header", "write_bam", "write_bed"]

GB = 10**9
READ_LEN = 150
CHUNK = 100_000  # reads or lines generated per write

# GRCh38 primary assembly, plus a few unplaced/random contigs and chrEBV as in the analysis sets.
HG38 = {
    "chr1": 248_956_422, "chr2": 242_193_529, "chr3": 198_295_559, "chr4": 190_214_555,
    "chr5": 181_538_259, "chr6": 170_805_979, "chr7": 159_345_973, "chr8": 145_138_636,
    "chr9": 138_394_717, "chr10": 133_797_422, "chr11": 135_086_622, "chr12": 133_275_309,
    "chr13": 114_364_328, "chr14": 107_043_718, "chr15": 101_991_189, "chr16": 90_338_345,
    "chr17": 83_257_441, "chr18": 80_373_285, "chr19": 58_617_616, "chr20": 64_444_167,
    "chr21": 46_709_983, "chr22": 50_818_468, "chrX": 156_040_895, "chrY": 57_227_415,
    "chrM": 16_569, "chr1_KI270706v1_random": 175_055, "chrUn_GL000220v1": 161_802,
    "chrEBV": 171_823,
}
_CONTIGS = list(HG38)
_CUM = []
_total = 0
for _name in _CONTIGS:
    _total += HG38[_name]
    _CUM.append(_total)

# Random byte -> base (uniform) and -> NovaSeq-binned quality (Q37 'F' ~83 %, Q23 '8' ~10 %,
# Q12 '-' ~5 %, Q2 '#' ~2 %).
_BASES = bytes(b"ACGT"[i % 4] for i in range(256))
_QUALS = bytes(b"#" * 5 + b"-" * 13 + b"8" * 26 + b"F" * 212)


def sam_header() -> str:
    lines = ["@HD\tVN:1.6\tSO:unsorted"]
    lines += [f"@SQ\tSN:{name}\tLN:{length}" for name, length in HG38.items()]
    lines.append("@RG\tID:bench\tSM:bench\tPL:ILLUMINA")
    lines.append("@PG\tID:bench\tPN:cfdb-bench")
    return "\n".join(lines) + "\n"


def sam_chunk(rng: random.Random, first: int, n: int) -> str:
    """``n`` single-end 150 bp alignment lines, reads ``first`` .. ``first + n - 1``."""
    seqs = rng.randbytes(n * READ_LEN).translate(_BASES).decode("ascii")
    quals = rng.randbytes(n * READ_LEN).translate(_QUALS).decode("ascii")
    contigs = rng.choices(_CONTIGS, cum_weights=_CUM, k=n)
    rand, bits = rng.random, rng.getrandbits
    out = []
    for i in range(n):
        chrom = contigs[i]
        pos = int(rand() * (HG38[chrom] - READ_LEN)) + 1
        r = bits(64)
        flag = 16 if r & 1 else 0
        mapq = 60 if (r >> 1) & 15 < 13 else (0, 1, 3, 23, 40, 42, 44, 50)[(r >> 5) & 7]
        nm = ((r >> 8) & 7) if (r >> 11) & 3 == 0 else 0
        clip = ((r >> 13) & 31) + 1 if (r >> 18) & 15 == 0 else 0
        cigar = f"{clip}S{READ_LEN - clip}M" if clip else "150M"
        k = first + i
        name = f"A00531:412:HV3KJDSXY:{1 + (k >> 22) % 4}:{1101 + (k >> 12) % 1578}:{(r >> 22) & 0x7FFF}:{(r >> 37) & 0xFFFF}"
        s = i * READ_LEN
        out.append(
            f"{name}\t{flag}\t{chrom}\t{pos}\t{mapq}\t{cigar}\t*\t0\t0\t{seqs[s:s + READ_LEN]}\t"
            f"{quals[s:s + READ_LEN]}\tNM:i:{nm}\tAS:i:{READ_LEN - clip - 5 * nm}\tRG:Z:bench\n"
        )
    return "".join(out)


def write_bam(path: Path, rng: random.Random, reads: int) -> None:
    """Stream SAM text through ``samtools view -b -@2`` (default level) into ``path``."""
    proc = subprocess.Popen(
        ["samtools", "view", "--no-PG", "-b", "-@2", "-o", str(path), "-"], stdin=subprocess.PIPE
    )
    try:
        proc.stdin.write(sam_header().encode())
        for first in range(0, reads, CHUNK):
            proc.stdin.write(sam_chunk(rng, first, min(CHUNK, reads - first)).encode("ascii"))
        proc.stdin.close()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    if proc.wait() != 0:
        raise RuntimeError(f"samtools view -b exited {proc.returncode} writing {path}")


def bam_bytes_per_read(seed: int, workdir: Path) -> float:
    """Calibrate: BAM bytes per generated read, from a 50 k-read sample (own seed)."""
    sample = workdir / "calibrate.bam"
    n = 50_000
    write_bam(sample, random.Random(seed + 1), n)
    size = sample.stat().st_size
    sample.unlink()
    return size / n


def bed_chunk(rng: random.Random, first: int, n: int) -> str:
    """``n`` narrowPeak lines (BED6+4), peaks ``first`` .. ``first + n - 1``, in random order."""
    contigs = rng.choices(_CONTIGS, cum_weights=_CUM, k=n)
    rand, bits = rng.random, rng.getrandbits
    out = []
    for i in range(n):
        chrom = contigs[i]
        start = int(rand() * (HG38[chrom] - 2500))
        r = bits(64)
        width = 150 + (r & 2047)
        signal_value = 2 + rand() * rand() * 60
        p = 2 + rand() * 40
        out.append(
            f"{chrom}\t{start}\t{start + width}\tpeak{first + i}\t{(r >> 11) % 1001}\t.\t"
            f"{signal_value:.5f}\t{p:.5f}\t{p * 0.8 * rand():.5f}\t{(r >> 21) % width}\n"
        )
    return "".join(out)


def write_bed(path: Path, rng: random.Random, target_bytes: int) -> int:
    """Write whole chunks until ``target_bytes`` is reached; returns the number of lines."""
    lines = written = 0
    with open(path, "wb") as fh:
        while written < target_bytes:
            n = min(CHUNK, max(1000, (target_bytes - written) // 60))  # ~70 B a line
            data = bed_chunk(rng, lines, n).encode("ascii")
            fh.write(data)
            written += len(data)
            lines += n
    return lines
