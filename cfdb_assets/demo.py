"""A small, deterministic demo catalog with source files (``python -m cfdb_assets.demo DIR``).

Writes ``DIR/catalog.jsonl`` (documents shaped like the MongoDB ``files`` collection) and the source
files it points to through ``file://`` URLs: unsorted BED, SAM, VCF (gzip), narrowPeak and GFF3, a
passthrough CSV, a record whose md5 does not match its bytes, one without a checksum, and a
restricted HuBMAP file. The same seed always gives the same bytes, hence the same cache keys.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import random
from pathlib import Path

__all__ = ["CHROMS", "bed_text", "document", "sam_text", "write_demo"]

SEED = 42
CHROMS = {"chr1": 1_000_000, "chr2": 800_000, "chr10": 600_000, "chrX": 500_000}


def bed_text(rng: random.Random, n: int = 2000) -> str:
    lines = ["track name=demo description=\"demo peaks\"", "# unsorted demo intervals"]
    for i in range(n):
        chrom = rng.choice(list(CHROMS))
        start = rng.randrange(0, CHROMS[chrom] - 1000)
        lines.append(f"{chrom}\t{start}\t{start + rng.randrange(20, 1000)}\tpeak{i}\t{rng.randrange(0, 1000)}")
    return "\n".join(lines) + "\n"


def _narrowpeak(rng: random.Random, n: int = 500) -> str:
    lines = []
    for i in range(n):
        chrom = rng.choice(list(CHROMS))
        start = rng.randrange(0, CHROMS[chrom] - 2000)
        end = start + rng.randrange(100, 2000)
        lines.append(
            f"{chrom}\t{start}\t{end}\tnp{i}\t{rng.randrange(0, 1000)}\t.\t{rng.uniform(1, 50):.3f}\t"
            f"{rng.uniform(1, 20):.3f}\t{rng.uniform(1, 20):.3f}\t{rng.randrange(0, end - start)}"
        )
    return "\n".join(lines) + "\n"


def sam_text(rng: random.Random, n: int = 1000) -> str:
    lines = ["@HD\tVN:1.6\tSO:unsorted"]
    lines += [f"@SQ\tSN:{c}\tLN:{length}" for c, length in CHROMS.items()]
    lines.append("@PG\tID:demo\tPN:cfdb-demo")
    for i in range(n):
        chrom = rng.choice(list(CHROMS))
        pos = rng.randrange(1, CHROMS[chrom] - 200)
        seq = "".join(rng.choice("ACGT") for _ in range(100))
        qual = "".join(chr(33 + rng.randrange(20, 41)) for _ in range(100))
        flag = rng.choice((0, 16))
        lines.append(f"read{i:05d}\t{flag}\t{chrom}\t{pos}\t60\t100M\t*\t0\t0\t{seq}\t{qual}")
    return "\n".join(lines) + "\n"


def _vcf(rng: random.Random, n: int = 500) -> str:
    lines = ["##fileformat=VCFv4.2", "##source=cfdb-demo"]
    lines += [f"##contig=<ID={c},length={length}>" for c, length in CHROMS.items()]
    lines.append('##INFO=<ID=DP,Number=1,Type=Integer,Description="Depth">')
    lines.append("#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO")
    for i in range(n):
        chrom = rng.choice(list(CHROMS))
        ref, alt = rng.sample("ACGT", 2)
        lines.append(f"{chrom}\t{rng.randrange(1, CHROMS[chrom])}\tvar{i}\t{ref}\t{alt}\t50\tPASS\tDP={rng.randrange(1, 99)}")
    return "\n".join(lines) + "\n"


def _gff3(rng: random.Random, n: int = 200) -> str:
    lines = ["##gff-version 3"]
    for i in range(n):
        chrom = rng.choice(list(CHROMS))
        start = rng.randrange(1, CHROMS[chrom] - 5000)
        lines.append(f"{chrom}\tdemo\tgene\t{start}\t{start + rng.randrange(100, 5000)}\t.\t+\t.\tID=gene{i};Name=G{i}")
    return "\n".join(lines) + "\n"


def _csv(rng: random.Random, n: int = 50) -> str:
    rows = ["chrom,start,end,value"]
    for _ in range(n):
        chrom = rng.choice(list(CHROMS))
        start = rng.randrange(0, CHROMS[chrom] - 100)
        rows.append(f"{chrom},{start},{start + 100},{rng.random():.4f}")
    return "\n".join(rows) + "\n"


def document(dcc: str, local_id: str, path: Path, fmt: tuple[str, str], **overrides) -> dict:
    data = path.read_bytes()
    abbreviation = {"4dn": "4DN_DCIC", "encode": "ENCODE", "hubmap": "HuBMAP"}[dcc]
    doc = {
        "submission": dcc,
        "local_id": local_id,
        "md5": hashlib.md5(data).hexdigest(),
        "sha256": hashlib.sha256(data).hexdigest(),
        "size_in_bytes": len(data) if dcc == "encode" else str(len(data)),
        "access_url": path.resolve().as_uri(),
        "filename": path.name,
        "file_format": {"id": fmt[0], "name": fmt[1]},
        "dcc": {"dcc_abbreviation": abbreviation},
        "data_access_level": "public",
        "extra": {},
    }
    doc.update(overrides)
    return doc


def write_demo(out: Path) -> Path:
    """Write the demo sources and catalog under ``out``; returns the catalog path."""
    out.mkdir(parents=True, exist_ok=True)
    src = out / "sources"
    src.mkdir(exist_ok=True)
    rng = random.Random(SEED)
    files = {
        "ENCFF000BED.bed": bed_text(rng).encode(),
        "ENCFF000SAM.sam": sam_text(rng).encode(),
        "ENCFF000NPK.narrowPeak": _narrowpeak(rng).encode(),
        "4DNFIVCF0001.vcf.gz": gzip.compress(_vcf(rng).encode(), mtime=0),
        "4DNFIGFF0001.gff3": _gff3(rng).encode(),
        "ENCFF000CSV.csv": _csv(rng).encode(),
        "HBM000BED.bed": bed_text(rng, 300).encode(),
    }
    for name, data in files.items():
        (src / name).write_bytes(data)
    docs = [
        document("encode", "ENCFF000BED", src / "ENCFF000BED.bed", ("format:3003", "BED")),
        document("encode", "ENCFF000SAM", src / "ENCFF000SAM.sam", ("format:2573", "SAM")),
        document("encode", "ENCFF000NPK", src / "ENCFF000NPK.narrowPeak", ("format:3613", "NarrowPeak")),
        document("encode", "ENCFF000CSV", src / "ENCFF000CSV.csv", ("format:3752", "CSV")),
        # Bytes that do not match the catalog md5: the job fails and nothing is published.
        document("encode", "ENCFF000BAD", src / "ENCFF000BED.bed", ("format:3003", "BED"),
                  md5="0" * 32, sha256=None),
        # No checksum: cannot be content-addressed; ?raw=true still streams it.
        document("encode", "ENCFF000NOSUM", src / "ENCFF000BED.bed", ("format:3003", "BED"),
                  md5=None, sha256=None),
        document("4dn", "4DNFIVCF0001", src / "4DNFIVCF0001.vcf.gz", ("format:3016", "VCF")),
        document("4dn", "4DNFIGFF0001", src / "4DNFIGFF0001.gff3", ("format:1975", "GFF3")),
        document("hubmap", "HBM000BED", src / "HBM000BED.bed", ("format:3003", "BED")),
        document("hubmap", "HBM000PROT", src / "HBM000BED.bed", ("format:3003", "BED"),
                  data_access_level="protected"),
    ]
    catalog = out / "catalog.jsonl"
    tmp = catalog.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(d, sort_keys=True) + "\n" for d in docs))
    tmp.replace(catalog)
    return catalog


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="directory to write the demo catalog and sources into")
    print(write_demo(parser.parse_args().out))


if __name__ == "__main__":
    main()
