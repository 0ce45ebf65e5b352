"""End to end on the production layout, every run on "Fargate": `scripts/run.sh` with the committed
deploy/dagster.yaml as the instance (Postgres storage in a throwaway database, the EcsRunLauncher,
run monitoring and retries, S3 compute logs), the ledger in the same Postgres, the store and the
catalog snapshot on moto's S3, sources over HTTP from loopback (the one test allowance: a closed rig,
CFDB_UPSTREAM_HOSTS=localhost). The launcher's RunTask calls reach moto's ECS, and the local ECS plane
(tests/ecs_plane.py) runs each task's `dagster api execute_run` as a local process, as Fargate would run
the image's container. The production guard stays on."""

from __future__ import annotations

import hashlib
import http.server
import random
import threading
from functools import partial
from pathlib import Path

import pytest

from synthetic.large import bam_bytes_per_read, write_bam
from synthetic.small import bed_text
from tests.ecs_plane import EcsPlane
from tests.e2e.production import (
    aws_client, aws_resources, catalog_snapshot, fresh_database, instance_env, production_home)
from tests.e2e.service import ROOT, Service
from tests.helpers import gosling_read

BAM_MB = 200  # the "cold 200 MB BAM": a small-class worker, a real sort
JOB_TIMEOUT_S = 300


class Sources:
    """A loopback HTTP server for the source files (the DCCs' upstreams stand-in)."""

    def __init__(self, directory: Path):
        handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(directory))
        handler.log_message = lambda *args: None
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://localhost:{self.server.server_address[1]}"


def _doc(local_id: str, path: Path, url: str, fmt: tuple[str, str]) -> dict:
    data = path.read_bytes()
    return {
        "submission": "encode", "local_id": local_id, "md5": hashlib.md5(data).hexdigest(),
        "size_in_bytes": len(data), "access_url": url, "filename": path.name,
        "file_format": {"id": fmt[0], "name": fmt[1]}, "dcc": {"dcc_abbreviation": "ENCODE"},
        "data_access_level": "public",
    }


@pytest.fixture(scope="module")
def fargate(tmp_path_factory, moto_server):
    root = tmp_path_factory.mktemp("fargate")
    sources_dir = root / "sources"
    sources_dir.mkdir()
    rng = random.Random(20261201)
    reads = int(BAM_MB * 1e6 / bam_bytes_per_read(7, root))
    write_bam(sources_dir / "big.bam", rng, reads)  # coordinate-unsorted: the worker sorts it
    (sources_dir / "peaks.bed").write_text(bed_text(11, 5000))
    sources = Sources(sources_dir)
    docs = [
        _doc("ENCFFBIGBAM", sources_dir / "big.bam", f"{sources.url}/big.bam", ("format:2572", "BAM")),
        _doc("ENCFFPEAKS", sources_dir / "peaks.bed", f"{sources.url}/peaks.bed", ("format:3003", "BED")),
    ]
    with fresh_database() as database:
        aws = aws_resources(moto_server, register_run_task=False)
        home = production_home(root / "dagster_home")
        project = {  # as the stack's task definitions set them
            "CFDB_LEDGER_URL": database.render_as_string(hide_password=False),
            "CFDB_CATALOG": catalog_snapshot(aws, docs),
            "CFDB_UPSTREAM_HOSTS": "localhost",
            "CFDB_ALLOW_HTTP_LOOPBACK": "true",
        }
        worker_env = {**instance_env(database, aws, home, max_concurrent_runs=4), **project,
                      "CFDB_DATA_DIR": str(root / "worker")}
        plane = EcsPlane(moto_server, root, base_env={
            "PATH": f"{ROOT / '.venv' / 'bin'}:/usr/bin:/bin", "HOME": str(root), "LANG": "C.UTF-8"}, cwd=ROOT)
        plane.start()
        plane.register(aws["CFDB_RUN_TASK_DEFINITION"], aws["CFDB_RUN_CONTAINER"], worker_env)
        service = Service(root, {**instance_env(database, aws, home, max_concurrent_runs=4), **project,
                                 **plane.metadata_env()})
        try:
            service.start(timeout=180)
            yield service, plane, aws
        finally:
            service.stop()
            plane.close()


def _s3_keys(aws: dict, prefix: str) -> set[str]:
    bucket, _, root = aws["CFDB_STORE"].removeprefix("s3://").partition("/")
    s3 = aws_client("s3", aws["AWS_ENDPOINT_URL"])
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{root}/{prefix}")
    return {o["Key"].rsplit("/", 1)[-1] for page in pages for o in page.get("Contents", [])}


def test_cold_files_are_built_on_tasks_sized_for_them_and_read_by_gosling(fargate):
    service, plane, aws = fargate
    with service.client() as client:
        jobs = {local_id: client.get(f"/data/encode/{local_id}").json()["job_id"]
                for local_id in ("ENCFFBIGBAM", "ENCFFPEAKS")}
        ended = {local_id: service.wait_job(job, timeout=JOB_TIMEOUT_S) for local_id, job in jobs.items()}
        files = {local_id: client.get(f"/files/encode/{local_id}").json() for local_id in jobs}

    for local_id, (body, seen) in ended.items():
        assert body["status"] == "completed", (local_id, body, seen)
        assert body["stages_done"] == ["data", "index"]
        assert files[local_id]["state"] == "ready"
    tasks = {record.tags["cfdb/job_id"]: record for record in plane.tasks.values()}
    assert set(tasks) == set(jobs.values())  # one task per job: no retry was needed
    for local_id, job in jobs.items():
        task = tasks[job]
        # The small class: sources under 1 GiB get 1 vCPU, 4 GiB and Fargate's least disk.
        assert (task.cpu, task.memory, task.ephemeral_storage_gib) == ("1024", "4096", 21), task
        assert task.tags["cfdb/size_class"] == "small"
        assert task.command[:3] == ["dagster", "api", "execute_run"]
        assert task.exit_code == 0
        key = files[local_id]["cache_key"]
        assert {"manifest.json"} <= _s3_keys(aws, key)

    bam, bed = files["ENCFFBIGBAM"], files["ENCFFPEAKS"]
    records = gosling_read("bam", f"{service.url}{bam['data_url']}", f"{service.url}{bam['index_url']}",
                           [["chr1", 0, 2_000_000]])
    assert len(records[0]) > 100
    lines = gosling_read("tabix", f"{service.url}{bed['data_url']}", f"{service.url}{bed['index_url']}",
                         [["chr1", 0, 250_000_000]])
    assert lines[0] and all(line.startswith("chr1\t") for line in lines[0])

