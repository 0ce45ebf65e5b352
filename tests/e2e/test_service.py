"""End to end: the real daemon (sensors → runs → materializations) and the real API, over HTTP."""

from __future__ import annotations

import random
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import dagster as dg
import pysam

from resources import LocalStore
from tests.e2e.conftest import catalog_doc
from tests.e2e.service import Service


def _source_path(service: Service, local_id: str) -> Path:
    return Path(urlsplit(catalog_doc(service, local_id)["access_url"]).path)


def _request_and_wait(service: Service, local_id: str) -> tuple[dict, list[str]]:
    with service.client() as client:
        first = client.get(f"/data/encode/{local_id}")
    assert first.status_code == 202, first.text
    job_id = first.json()["job_id"]
    assert first.headers["location"] == f"/jobs/{job_id}"
    assert first.headers["retry-after"] == "5"
    assert first.json()["status"] == "pending"
    return service.wait_job(job_id)


def _download(service: Service, path: str, dest: Path) -> Path:
    with service.client() as client:
        response = client.get(path)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/octet-stream"
    assert "content-encoding" not in response.headers
    dest.write_bytes(response.content)
    return dest


def _regions(rng: random.Random, n: int = 25) -> list[tuple[str, int, int]]:
    chroms = {"chr1": 1_000_000, "chr2": 800_000, "chr10": 600_000, "chrX": 500_000}
    out = []
    for _ in range(n):
        chrom = rng.choice(list(chroms))
        start = rng.randrange(0, chroms[chrom] - 60_000)
        out.append((chrom, start, start + rng.randrange(1_000, 60_000)))
    return out


def test_bed_miss_runs_pending_running_completed_then_serves_bgzip_and_tbi(service, tmp_path):
    body, seen = _request_and_wait(service, "ENCFF000BED")
    assert seen == ["pending", "running", "completed"], seen
    assert body["stages_done"] == ["data", "index"]
    assert body["error"] is None
    assert body["run_id"] and body["run_url"].endswith(f"/runs/{body['run_id']}")

    data = _download(service, "/data/encode/ENCFF000BED", tmp_path / "data.bed.gz")
    _download(service, "/index/encode/ENCFF000BED", tmp_path / "data.bed.gz.tbi")
    with service.client() as client:
        ranged = client.get("/data/encode/ENCFF000BED", headers={"Range": "bytes=10-109"})
    assert ranged.status_code == 206
    assert ranged.headers["content-range"] == f"bytes 10-109/{data.stat().st_size}"
    assert ranged.content == data.read_bytes()[10:110]

    # pysam reads the pair; every region matches a brute-force scan of the source.
    source = [
        line.split("\t")
        for line in _source_path(service, "ENCFF000BED").read_text().splitlines()
        if line and not line.startswith(("track", "#"))
    ]
    with pysam.TabixFile(str(data)) as tbx:
        for chrom, start, end in _regions(random.Random(7)):
            got = sorted(tuple(r.split("\t")) for r in tbx.fetch(chrom, start, end))
            want = sorted(tuple(f) for f in source if f[0] == chrom and int(f[1]) < end and int(f[2]) > start)
            assert got == want, (chrom, start, end)


def _reference_span(cigar: str) -> int:
    """Reference bases a CIGAR covers (M, D, N, =, X consume the reference)."""
    return sum(int(n) for n, op in re.findall(r"(\d+)([MIDNSHP=X])", cigar) if op in "MDN=X")


def test_sam_miss_becomes_sorted_bam_with_bai_queryable_by_pysam(service, tmp_path):
    _, seen = _request_and_wait(service, "ENCFF000SAM")
    assert seen[-1] == "completed" and seen[0] == "pending", seen

    with service.client() as client:
        info = client.get("/files/encode/ENCFF000SAM").json()
    assert info["state"] == "ready" and info["index_type"] == "bai"
    bam = _download(service, info["data_url"], tmp_path / "data.bam")
    _download(service, info["index_url"], tmp_path / "data.bam.bai")

    records = [
        line.split("\t")
        for line in _source_path(service, "ENCFF000SAM").read_text().splitlines()
        if not line.startswith("@")
    ]
    with pysam.AlignmentFile(str(bam), "rb", index_filename=str(tmp_path / "data.bam.bai")) as aln:
        assert aln.header.to_dict()["HD"]["SO"] == "coordinate"
        assert aln.mapped == len(records)
        for chrom, start, end in _regions(random.Random(11)):
            got = sorted(r.query_name for r in aln.fetch(chrom, start, end))
            # 1-based POS p with a CIGAR spanning n reference bases covers [p-1, p-1+n), 0-based half-open.
            want = sorted(f[0] for f in records
                          if f[2] == chrom and int(f[3]) - 1 < end and int(f[3]) - 1 + _reference_span(f[5]) > start)
            assert got == want, (chrom, start, end)


def test_fifty_concurrent_gets_make_one_job_one_run_one_materialization(service):
    with ThreadPoolExecutor(50) as pool, service.client() as client:
        responses = list(pool.map(lambda _: client.get("/data/encode/ENCFF000NPK"), range(50)))
    assert {r.status_code for r in responses} == {202}
    job_ids = {r.json()["job_id"] for r in responses}
    assert len(job_ids) == 1
    job_id = job_ids.pop()
    body, _ = service.wait_job(job_id)
    assert body["status"] == "completed"

    instance = dg.DagsterInstance.from_config(str(service.dagster_home))
    runs = instance.get_run_records(dg.RunsFilter(tags={"cfdb/job_id": job_id}))
    partition_runs = instance.get_run_records(dg.RunsFilter(tags={"dagster/partition": body["cache_key"]}))
    assert len(runs) == 1 and len(partition_runs) == 1
    for stage in ("sorted", "index"):
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey(["encode", "intervals", stage]), asset_partitions=[body["cache_key"]]),
            limit=10,
        ).records
        assert len(records) == 1, stage
    # Once ready, more GETs are hits: no new job, no new run.
    with service.client() as client:
        assert client.get("/data/encode/ENCFF000NPK").status_code == 200
    assert len(instance.get_run_records(dg.RunsFilter(tags={"dagster/partition": body["cache_key"]}))) == 1


def test_checksum_mismatch_fails_visibly_publishes_nothing_and_retries_after_window(service):
    with service.client() as client:
        first = client.get("/data/encode/ENCFF000BAD")
    assert first.status_code == 202
    job_id = first.json()["job_id"]
    body, _ = service.wait_job(job_id)
    assert body["status"] == "failed"
    actual_md5 = catalog_doc(service, "ENCFF000BED")["md5"]
    assert "ChecksumMismatch" in body["error"]
    assert "0" * 32 in body["error"] and actual_md5 in body["error"]
    assert str(service.root) not in body["error"]  # no absolute paths in public errors

    store = LocalStore(root=str(service.data_dir / "artifacts"))
    assert store.manifest(body["cache_key"]) is None
    assert not (service.data_dir / "artifacts" / body["cache_key"]).exists()

    with service.client() as client:
        info = client.get("/files/encode/ENCFF000BAD").json()
        assert info["state"] == "failed" and info["data_url"] is None
        remembered = client.get("/data/encode/ENCFF000BAD")
        assert remembered.status_code == 422
        assert remembered.json()["job_id"] == job_id
        assert int(remembered.headers["retry-after"]) >= 1
        # After the retry window (6 s in this service), the next GET is a new attempt.
        time.sleep(int(remembered.headers["retry-after"]) + 0.5)
        retried = client.get("/data/encode/ENCFF000BAD")
    assert retried.status_code == 202
    assert retried.json()["job_id"] != job_id


def test_head_miss_is_404_and_creates_no_job(service):
    with service.client() as client:
        head = client.head("/data/4dn/4DNFIGFF0001")
        info = client.get("/files/4dn/4DNFIGFF0001").json()
    assert head.status_code == 404
    assert info["state"] == "missing" and info["job"] is None


def test_passthrough_csv_streams_the_source_bytes(service):
    with service.client() as client:
        response = client.get("/data/encode/ENCFF000CSV")
    assert response.status_code == 200
    assert response.content == _source_path(service, "ENCFF000CSV").read_bytes()
    assert response.headers["content-type"].startswith("text/csv")
