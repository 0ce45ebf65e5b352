"""A small, deterministic demo catalog with source files (``python -m synthetic.demo DIR``).

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

from synthetic.small import CHROMS, bed_text, gff3_text, sam_text, vcf_text

__all__ = ["document", "write_demo"]

SEED = 42


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
    files = {
        "ENCFF000BED.bed": bed_text(SEED, 2000).encode(),
        "ENCFF000SAM.sam": sam_text(SEED + 1, 1000, unmapped=0, placed_unmapped=0).encode(),
        "ENCFF000NPK.narrowPeak": bed_text(SEED + 2, 500, kind="narrowPeak").encode(),
        "4DNFIVCF0001.vcf.gz": gzip.compress(vcf_text(SEED + 3, 500).encode(), mtime=0),
        "4DNFIGFF0001.gff3": gff3_text(SEED + 4, 200).encode(),
        "ENCFF000CSV.csv": _csv(random.Random(SEED + 5)).encode(),
        "HBM000BED.bed": bed_text(SEED + 6, 300).encode(),
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
