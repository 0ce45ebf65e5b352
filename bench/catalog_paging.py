"""Catalog paging and reloads: the JSON Lines catalog's previous code path vs the current one, in one run.

Builds JSON Lines catalogs of 1k, 10k and 100k ``files`` documents (shaped like ``synthetic.demo``'s,
with fake https access URLs: nothing is fetched) in a temp dir, all in one DCC, and measures:

  list      ``catalog.list(dcc, 100, after=<a random existing local_id>)``: p50 / p99;
  page      a full ``/files?dcc=...&limit=100&cursor=...`` page through ``Files.page`` (the catalog
            page, then the plans, manifests and one ledger query): p50 / p99;
  swap      the file is replaced (a new file renamed over it) and a request arrives: its latency,
            then the p50 / max of the requests made while the new catalog loads, and how long until
            the new records are served.

"old" is the previous ``JsonLinesCatalog`` code reimplemented here (``OldFileCatalog``): the list
of every id per request (``bisect.bisect_right([r.local_id for r in records], after)``) and the
reload run on the request path under the lock. "new" is ``resources.catalog_jsonl.FileCatalog``:
sorted local_ids kept per DCC at load, and the reload in a background thread.

    .venv/bin/python bench/catalog_paging.py [--sizes 1000,10000,100000] [--requests 2000] [--pages 300]
"""

from __future__ import annotations

import argparse
import bisect
import hashlib
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cfdb_assets.planning import OutputOptions  # noqa: E402
from resources import FileCatalog, FileRecord, Settings, adapters  # noqa: E402
from serve.files import Files, _encode_cursor  # noqa: E402

DCC = "encode"
LIMIT = 100
FORMATS = [("format:3003", "BED", "bed"), ("format:2572", "BAM", "bam"), ("format:3016", "VCF", "vcf.gz"),
           ("format:3752", "CSV", "csv")]


class OldFileCatalog(FileCatalog):
    """The code path of before: a reload on the request path under the lock, and a list of every
    id of the DCC built per ``list`` to bisect ``after``."""

    def _current(self):
        index = self._index
        if index is not None and self._stamp() == index.stamp:
            return index
        with self._lock:
            stamp = self._stamp()
            if self._index is None or self._index.stamp != stamp:
                self._install(self._build(stamp))
            return self._index

    def list(self, dcc: str, limit: int, after: str | None = None) -> list[FileRecord]:
        records = self._current().by_dcc.get(dcc.strip().lower(), [])
        start = 0
        if after is not None:
            start = bisect.bisect_right([r.local_id for r in records], after)
        return records[start : start + limit]


def document(rng: random.Random, local_id: str) -> dict:
    """A ``files`` document like ``synthetic.demo.document``'s, with a fake https access URL."""
    fmt_id, fmt_name, ext = rng.choice(FORMATS)
    digest = hashlib.md5(local_id.encode()).hexdigest()
    return {
        "submission": DCC,
        "local_id": local_id,
        "md5": digest,
        "sha256": hashlib.sha256(local_id.encode()).hexdigest(),
        "size_in_bytes": rng.randrange(1_000, 10**10),
        "access_url": f"https://files.example.org/{local_id}/@@download/{local_id}.{ext}",
        "filename": f"{local_id}.{ext}",
        "file_format": {"id": fmt_id, "name": fmt_name},
        "dcc": {"dcc_abbreviation": "ENCODE"},
        "data_access_level": "public",
        "extra": {},
    }


def write_catalog(path: Path, ids: list[str], seed: int) -> None:
    rng = random.Random(seed)
    order = ids[:]
    rng.shuffle(order)  # a catalog export is not sorted by local_id
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for local_id in order:
            fh.write(json.dumps(document(rng, local_id)) + "\n")
    os.replace(tmp, path)  # the swap a catalog export does


def percentiles(samples_ns: list[int]) -> tuple[float, float]:
    ordered = sorted(samples_ns)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return statistics.median(ordered) / 1e6, p99 / 1e6


def time_calls(call, arguments: list) -> tuple[float, float]:
    samples = []
    for argument in arguments:
        start = time.perf_counter_ns()
        call(argument)
        samples.append(time.perf_counter_ns() - start)
    return percentiles(samples)


def swap(catalog, path: Path, ids: list[str], new_id: str, seed: int) -> tuple[float, float, float, float]:
    """Replace the file (one id more), then request: the first request's latency (ms), the p50 and
    max of the requests while the new catalog loads (ms), and the time until it is served (s)."""
    write_catalog(path, [*ids, new_id], seed)
    start = time.perf_counter_ns()
    page = catalog.list(DCC, LIMIT)
    first = time.perf_counter_ns() - start
    during = []
    while not any(r.local_id == new_id for r in page):
        time.sleep(0.001)  # requests arriving at ~1k/s: not a busy loop fighting the reload for the GIL
        t0 = time.perf_counter_ns()
        page = catalog.list(DCC, LIMIT, after=new_id[:-1])
        during.append(time.perf_counter_ns() - t0)
    visible = (time.perf_counter_ns() - start) / 1e9
    p50, _ = percentiles(during) if during else (float("nan"), 0)
    return first / 1e6, p50, (max(during) / 1e6 if during else float("nan")), visible


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--requests", type=int, default=2000, help="list calls per size and code path")
    parser.add_argument("--pages", type=int, default=300, help="Files.page calls per size and code path")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    rows = []
    with tempfile.TemporaryDirectory(prefix="cfdb-bench-catalog-") as tmp:
        for n in sizes:
            work = Path(tmp) / str(n)
            work.mkdir()
            path = work / "catalog.jsonl"
            ids = [f"ENCFF{i:07d}" for i in range(n)]
            write_catalog(path, ids, args.seed)
            settings = Settings.from_environ({"CFDB_DATA_DIR": str(work / "data"), "CFDB_CATALOG": str(path)})
            parts = adapters(settings)
            parts.store.check()
            parts.ledger.check()
            options = OutputOptions.from_settings(settings)
            rng = random.Random(args.seed + n)
            afters = [rng.choice(ids) for _ in range(args.requests)]
            cursors = [_encode_cursor(DCC, rng.choice(ids)) for _ in range(args.pages)]

            result = {"n": n}
            for name, cls in (("old", OldFileCatalog), ("new", FileCatalog)):
                catalog = cls(path=str(path), dccs=list(settings.dccs))
                start = time.perf_counter()
                catalog.check()
                result[f"{name}_load"] = time.perf_counter() - start
                assert [r.local_id for r in catalog.list(DCC, 3, ids[5])] == ids[6:9]
                files = Files(settings, catalog, parts.store, parts.ledger, options)
                result[f"{name}_list"] = time_calls(lambda after, c=catalog: c.list(DCC, LIMIT, after), afters)
                result[f"{name}_page"] = time_calls(lambda cursor, f=files: f.page(DCC, LIMIT, cursor), cursors)
                new_id = f"ENCFF{n:07d}{name}"  # sorts after every other id
                result[f"{name}_swap"] = swap(catalog, path, ids, new_id, args.seed + 1)
                if name == "new":
                    assert catalog.wait_reloaded(60)
            rows.append(result)
            print(f"  {n:>7} documents: done (load {result['new_load']:.2f} s)", file=sys.stderr, flush=True)

    print(f"\nJSON Lines catalog, one DCC, limit={LIMIT}; {args.requests} list calls and {args.pages} pages per cell; "
          "times in ms unless marked (p50 / p99).\n")
    header = ("documents", "path", "list p50/p99", "Files.page p50/p99", "1st request after swap",
              "requests during reload p50/max", "new records served after")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for r in rows:
        for name in ("old", "new"):
            first, during_p50, during_max, visible = r[f"{name}_swap"]
            during = "(all blocked)" if name == "old" else f"{during_p50:.3f} / {during_max:.2f}"
            print(
                f"| {r['n']:,} | {name} | {r[f'{name}_list'][0]:.3f} / {r[f'{name}_list'][1]:.3f} "
                f"| {r[f'{name}_page'][0]:.2f} / {r[f'{name}_page'][1]:.2f} | {first:.2f} | {during} | {visible:.2f} s |"
            )


if __name__ == "__main__":
    main()
