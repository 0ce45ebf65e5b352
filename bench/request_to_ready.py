"""Request → ready time for a cold BED and a cold SAM, through the real service (`scripts/run.sh`).

For each trial a fresh, never-seen file (a new seed, so a new md5 and cache key) is requested with
GET /data; the clock stops when GET /data answers 200 with the artifact. Prints the median of N.

    .venv/bin/python bench/request_to_ready.py [--trials 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from synthetic.demo import document
from synthetic.small import bed_text, sam_text
from tests.e2e.service import Service


def write_catalog(root: Path, trials: int) -> Path:
    sources = root / "sources"
    sources.mkdir(parents=True)
    docs = []
    for i in range(trials + 1):  # one extra of each kind for the warm-up
        for kind, text, fmt in (("BED", bed_text, ("format:3003", "BED")), ("SAM", sam_text, ("format:2573", "SAM"))):
            path = sources / f"BENCH{kind}{i}.{kind.lower()}"
            path.write_text(text(1000 + i))
            docs.append(document("encode", f"BENCH{kind}{i}", path, fmt))
    catalog = root / "catalog.jsonl"
    catalog.write_text("".join(json.dumps(d) + "\n" for d in docs))
    return catalog


def time_to_ready(service: Service, local_id: str, timeout: float = 120) -> float:
    with service.client() as client:
        started = time.monotonic()
        first = client.get(f"/data/encode/{local_id}")
        assert first.status_code == 202, first.text
        while time.monotonic() - started < timeout:
            response = client.get(f"/data/encode/{local_id}")
            if response.status_code == 200:
                return time.monotonic() - started
            time.sleep(0.1)
    raise RuntimeError(f"{local_id} not ready after {timeout} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        service = Service(root, {"CFDB_CATALOG": str(write_catalog(root / "catalog", args.trials))})
        service.start()
        try:
            # Warm-up: the first run also pays for the code server's first load.
            time_to_ready(service, f"BENCHBED{args.trials}")
            for kind in ("BED", "SAM"):
                times = [time_to_ready(service, f"BENCH{kind}{i}") for i in range(args.trials)]
                print(f"{kind}: request -> ready median {statistics.median(times):.1f} s "
                      f"(n={len(times)}, min {min(times):.1f}, max {max(times):.1f})")
        finally:
            service.stop()


if __name__ == "__main__":
    main()
