"""The operators' scale: registering a large catalog, and whether the API and the Dagster UI stay flat
as partitions grow (1k vs 100k registered files, in one run).

For each size N: a JSON Lines catalog of N files in one DCC (BED, VCF and BAM records with fake https
URLs: nothing is fetched), a fresh data directory and DAGSTER_HOME (the embedded profile: SQLite
ledger and Dagster storage), then:

  register   the register_catalog job's code path (``cfdb_assets.registration.register``) into the
             ledger and the instance's dynamic partitions: seconds, partitions per second;
  api        the API in process (Starlette's TestClient, real resources): p50 / p99 of
             ``GET /files/{dcc}/{id}``, ``HEAD /data/{dcc}/{id}`` and ``GET /files?dcc=&limit=100&cursor=``
             over random files;
  ui         the real ``dagster-webserver`` on that instance: p50 / max of the GraphQL query the asset
             page's Partitions tab issues for ``encode/intervals/index`` (partition keys, statuses).

Prints a table and the 100k / 1k ratio per figure (the issue's bar for the API: p99 within 1.5x).

    .venv/bin/python bench/registry_scale.py [--sizes 1000,100000] [--requests 1000]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cfdb_assets.planning import OutputOptions  # noqa: E402
from cfdb_assets.registration import RegistrationConfig, register  # noqa: E402
from resources import Settings, adapters  # noqa: E402
from tests.e2e.dagster_ui import answers  # noqa: E402
from tests.e2e.service import free_port  # noqa: E402
from tests.helpers import wait_until  # noqa: E402

DCC = "encode"
FORMATS = [("format:3003", "BED", "bed"), ("format:3016", "VCF", "vcf.gz"), ("format:2572", "BAM", "bam")]
PARTITIONS_QUERY = """query($key: AssetKeyInput!) {
  assetNodeOrError(assetKey: $key) { ... on AssetNode {
    partitionKeysByDimension { name partitionKeys }
    partitionStats { numMaterialized numPartitions numFailed numMaterializing }
    assetPartitionStatuses { __typename ... on DefaultPartitionStatuses { materializedPartitions failedPartitions } }
  } }
}"""


def write_catalog(path: Path, n: int) -> list[str]:
    ids = []
    with open(path, "w") as out:
        for i in range(n):
            fmt_id, fmt, ext = FORMATS[i % len(FORMATS)]
            local_id = f"ENCFF{i:07d}"
            ids.append(local_id)
            out.write(json.dumps({
                "submission": DCC, "local_id": local_id, "md5": hashlib.md5(local_id.encode()).hexdigest(),
                "size_in_bytes": 1000 + i, "access_url": f"https://www.encodeproject.org/files/{local_id}.{ext}",
                "filename": f"{local_id}.{ext}", "file_format": {"id": fmt_id, "name": fmt},
                "dcc": {"dcc_abbreviation": "ENCODE"}, "data_access_level": "public"}) + "\n")
    return ids


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def measure(n: int, requests: int, work: Path) -> dict[str, float]:
    import dagster as dg
    from starlette.testclient import TestClient

    from serve.app import create_app

    root = work / f"n{n}"
    home = root / "dagster_home"
    home.mkdir(parents=True)
    (home / "dagster.yaml").write_text((ROOT / "dagster.yaml").read_text())
    ids = write_catalog(root / "catalog.jsonl", n)
    env = {"CFDB_DATA_DIR": str(root / "data"), "CFDB_CATALOG": str(root / "catalog.jsonl"), "DAGSTER_HOME": str(home)}
    settings = Settings.from_environ(env)
    parts = adapters(settings)
    figures: dict[str, float] = {}

    with dg.DagsterInstance.from_config(str(home)) as instance:
        started = time.perf_counter()
        report = register(parts.catalog, parts.ledger, OutputOptions.from_settings(settings), RegistrationConfig(),
                          list(settings.dccs), lambda name: set(instance.get_dynamic_partitions(name)),
                          instance.add_dynamic_partitions)
        figures["register s"] = time.perf_counter() - started
        figures["register partitions/s"] = report.registered / figures["register s"]
    assert report.registered == n, report

    rng = random.Random(n)
    with TestClient(create_app(settings)) as client:
        for name, call in {
            "GET /files/{id}": lambda: client.get(f"/files/{DCC}/{rng.choice(ids)}"),
            "HEAD /data/{id}": lambda: client.head(f"/data/{DCC}/{rng.choice(ids)}"),
            "GET /files?limit=100": lambda: client.get("/files", params={"dcc": DCC, "limit": 100, "cursor": _cursor(
                rng.choice(ids))}),
        }.items():
            samples = []
            for _ in range(requests):
                t = time.perf_counter()
                status = call().status_code
                samples.append((time.perf_counter() - t) * 1000)
                assert status in (200, 404), (name, status)
            figures[f"{name} p50 ms"], figures[f"{name} p99 ms"] = percentiles(samples)

    port = free_port()
    proc = subprocess.Popen([str(ROOT / ".venv" / "bin" / "dagster-webserver"), "-w", "workspace.yaml",
                             "-h", "127.0.0.1", "-p", str(port)], cwd=ROOT, env={**os.environ, **env},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=300) as ui:
            wait_until(lambda: answers(ui), "the webserver answers", 120)
            samples = []
            for _ in range(5):
                t = time.perf_counter()
                body = ui.post("/graphql", json={"query": PARTITIONS_QUERY, "variables": {
                    "key": {"path": [DCC, "intervals", "index"]}}}).json()
                samples.append(time.perf_counter() - t)
                assert "errors" not in body, body
            keys = body["data"]["assetNodeOrError"]["partitionKeysByDimension"][0]["partitionKeys"]
            assert len(keys) == report.by_format.total() - report.by_format[f"{DCC}/BAM"], len(keys)
            figures["UI partitions query p50 s"] = statistics.median(samples)
            figures["UI partitions query max s"] = max(samples)
    finally:
        os.killpg(proc.pid, 15)
        proc.wait()
    return figures


def _cursor(local_id: str) -> str:
    from serve.files import _encode_cursor

    return _encode_cursor(DCC, local_id)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,100000")
    parser.add_argument("--requests", type=int, default=1000)  # fewer make p99 noise (one slow GC = 2x)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory(prefix="cfdb-registry-") as tmp:
        results = {n: measure(n, args.requests, Path(tmp)) for n in sizes}
    names = list(results[sizes[0]])
    print(f"{'figure':<28}" + "".join(f"{n:>14,}" for n in sizes) + f"{'ratio':>10}")
    for name in names:
        values = [results[n][name] for n in sizes]
        print(f"{name:<28}" + "".join(f"{v:>14.3f}" for v in values) + f"{values[-1] / values[0]:>10.2f}")
    print(f"load average: {os.getloadavg()}")


if __name__ == "__main__":
    main()
