"""End to end on the production layout, every run on "Fargate": `scripts/run.sh` with the committed
deploy/dagster.yaml as the instance (Postgres storage in a throwaway database, the EcsRunLauncher,
run monitoring and retries, S3 compute logs), the ledger in the same Postgres, the store and the
catalog snapshot on moto's S3, sources over HTTP from loopback (the one test allowance: a closed rig,
CFDB_UPSTREAM_HOSTS=localhost). The launcher's RunTask calls reach moto's ECS, and the local ECS plane
(tests/ecs_plane.py) runs each task as Fargate would: a container of the production image (podman,
built once per test session by tests/deploy) running the task's `dagster api execute_run`. The
production guard stays on."""

from __future__ import annotations

import hashlib
import http.server
import random
import threading
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import httpx
import pytest

from cfdb_assets.sizing import size_run
from resources import Ledger, SourceSpec
from synthetic.large import bam_bytes_per_read, write_bam
from synthetic.small import bed_text
from tests.ecs_plane import EcsPlane
from tests.e2e.dagster_ui import add_partition, answers, backfill
from tests.e2e.production import (
    aws_client, aws_resources, catalog_snapshot, fresh_database, instance_env, production_home)
from tests.e2e.service import Service
from tests.helpers import gosling_read, wait_until

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
def fargate(tmp_path_factory, moto_server, image):
    root = tmp_path_factory.mktemp("fargate")
    sources_dir = root / "sources"
    sources_dir.mkdir()
    rng = random.Random(20261201)
    reads = int(BAM_MB * 1e6 / bam_bytes_per_read(7, root))
    write_bam(sources_dir / "big.bam", rng, reads)  # coordinate-unsorted: the worker sorts it
    write_bam(sources_dir / "killed.bam", rng, reads)  # another one, for the worker that dies
    beds = {"ENCFFPEAKS": 11, "ENCFFHERD": 12, "ENCFFFILL1": 13, "ENCFFFILL2": 14, "ENCFFFILL3": 15, "ENCFFCAP": 16}
    for local_id, seed in beds.items():
        (sources_dir / f"{local_id}.bed").write_text(bed_text(seed, 5000))
    sources = Sources(sources_dir)
    docs = [
        _doc("ENCFFBIGBAM", sources_dir / "big.bam", f"{sources.url}/big.bam", ("format:2572", "BAM")),
        _doc("ENCFFKILLED", sources_dir / "killed.bam", f"{sources.url}/killed.bam", ("format:2572", "BAM")),
        *(_doc(local_id, sources_dir / f"{local_id}.bed", f"{sources.url}/{local_id}.bed", ("format:3003", "BED"))
          for local_id in beds),
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
        # The run task definition's environment, as the stack sets it: the image brings DAGSTER_HOME
        # (deploy/dagster.yaml baked in), the data directory and the code.
        worker_env = {k: v for k, v in instance_env(database, aws, home, max_concurrent_runs=4).items()
                      if k != "DAGSTER_HOME"} | project
        plane = EcsPlane(moto_server, root, image=image)
        plane.start()
        plane.register(aws["CFDB_RUN_TASK_DEFINITION"], aws["CFDB_RUN_CONTAINER"], worker_env)
        service = Service(root, {**instance_env(database, aws, home, max_concurrent_runs=4), **project,
                                 **plane.metadata_env()})
        try:
            service.start(timeout=180)
            yield service, plane, aws, docs
        finally:
            service.stop()
            plane.close()


def _s3_keys(aws: dict, prefix: str) -> set[str]:
    bucket, _, root = aws["CFDB_STORE"].removeprefix("s3://").partition("/")
    s3 = aws_client("s3", aws["AWS_ENDPOINT_URL"])
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{root}/{prefix}")
    return {o["Key"].rsplit("/", 1)[-1] for page in pages for o in page.get("Contents", [])}


def test_cold_files_are_built_on_tasks_sized_for_them_and_read_by_gosling(fargate):
    service, plane, aws, _ = fargate
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
        assert task.container  # it ran as a container of the production image
        assert plane.wait_stopped(task.arn)["containers"][0]["exitCode"] == 0  # the container exits after the run
        key = files[local_id]["cache_key"]
        assert {"manifest.json"} <= _s3_keys(aws, key)

    bam_task = tasks[jobs["ENCFFBIGBAM"]]
    worker = ended["ENCFFBIGBAM"][0]["worker"]  # /jobs names the task the build ran on
    assert (worker["task_arn"], worker["size_class"], worker["cpu"]) == (bam_task.arn, "small", "1024")
    bam, bed = files["ENCFFBIGBAM"], files["ENCFFPEAKS"]
    records = gosling_read("bam", f"{service.url}{bam['data_url']}", f"{service.url}{bam['index_url']}",
                           [["chr1", 0, 2_000_000]])
    assert len(records[0]) > 100
    lines = gosling_read("tabix", f"{service.url}{bed['data_url']}", f"{service.url}{bed['index_url']}",
                         [["chr1", 0, 250_000_000]])
    assert lines[0] and all(line.startswith("chr1\t") for line in lines[0])



def test_fifty_concurrent_cold_gets_launch_exactly_one_task(fargate):
    service, plane, _, _ = fargate
    before = set(plane.tasks)

    def get(_):
        with service.client() as client:
            return client.get("/data/encode/ENCFFHERD")

    with ThreadPoolExecutor(max_workers=50) as pool:
        answers = list(pool.map(get, range(50)))

    assert {a.status_code for a in answers} == {202}
    job_ids = {a.json()["job_id"] for a in answers}
    assert len(job_ids) == 1
    body, _ = service.wait_job(job_ids.pop(), timeout=JOB_TIMEOUT_S)
    assert body["status"] == "completed"
    new = [plane.tasks[arn] for arn in set(plane.tasks) - before]
    assert [t.tags["cfdb/job_id"] for t in new] == [body["job_id"]]


def test_a_worker_killed_mid_sort_is_retried_on_a_new_task_and_nothing_partial_is_visible(fargate):
    service, plane, aws, _ = fargate
    with service.client() as client:
        job_id = client.get("/data/encode/ENCFFKILLED").json()["job_id"]
        key = client.get("/files/encode/ENCFFKILLED").json()["cache_key"]
        first = wait_until(lambda: next((r for r in plane.tasks.values() if r.tags.get("cfdb/job_id") == job_id),
                                        None), "the job's task starts")
        wait_until(lambda: "sorting" in (client.get(f"/jobs/{job_id}").json()["progress"] or ""),
                   "the build is sorting")

        plane.kill(first.arn)  # SIGKILL to the container's processes: the OS, or a Spot reclaim

        assert plane.wait_stopped(first.arn)["containers"][0]["exitCode"] == 137
        assert "manifest.json" not in _s3_keys(aws, key)
        assert client.get("/files/encode/ENCFFKILLED").json()["state"] != "ready"
        # Run monitoring (every 60 s in deploy/dagster.yaml) sees the stopped task, the run fails as
        # a lost worker and Dagster's run retry launches the next task.
        body, seen = service.wait_job(job_id, timeout=JOB_TIMEOUT_S + 120)

    assert body["status"] == "completed", (body, seen)
    assert "failed" not in seen  # the job stayed in flight while its run was retried
    tasks = [r for r in plane.tasks.values() if r.tags.get("cfdb/job_id") == job_id]
    assert [plane.wait_stopped(t.arn)["containers"][0]["exitCode"] for t in tasks] == [137, 0]
    assert "manifest.json" in _s3_keys(aws, key)


def test_no_fargate_capacity_fails_the_job_with_a_retryable_sentence_and_a_later_get_builds(fargate):
    service, plane, _, _ = fargate
    with plane.without_capacity() as refused, service.client() as client:
        job_id = client.get("/data/encode/ENCFFCAP").json()["job_id"]
        body, seen = service.wait_job(job_id, timeout=JOB_TIMEOUT_S)

    assert body["status"] == "failed", (body, seen)
    assert refused  # the launcher asked ECS for a task, and was refused each time
    assert body["error"].startswith("No worker could be started: "), body["error"]
    assert "Capacity is unavailable at this time" in body["error"], body["error"]
    assert "Traceback" not in body["error"] and "dagster." not in body["error"]
    with service.client() as client:
        again = client.get("/data/encode/ENCFFCAP")  # not remembered: a retryable failure
        assert again.status_code == 202 and again.json()["job_id"] != job_id
        body, _ = service.wait_job(again.json()["job_id"], timeout=JOB_TIMEOUT_S)
    assert body["status"] == "completed"


def test_a_backfill_of_three_partitions_from_the_ui_runs_three_sized_tasks(fargate):
    service, plane, _, docs = fargate
    ledger = Ledger(url=service.env["CFDB_LEDGER_URL"])
    fills = [d for d in docs if d["local_id"].startswith("ENCFFFILL")]
    keys = {}
    with service.client() as client, httpx.Client(base_url=f"http://127.0.0.1:{service.dagster_port}",
                                                  timeout=60) as ui:
        wait_until(lambda: answers(ui), "the Dagster webserver answers")
        for doc in fills:  # registered, as the operators' registration job will: no request behind them
            view = client.get(f"/files/encode/{doc['local_id']}").json()
            keys[doc["local_id"]] = view["cache_key"]
            ledger.register_source(SourceSpec(view["cache_key"], "encode", doc["local_id"], "BED", "intervals",
                                              f"md5:{doc['md5']}", doc["size_in_bytes"]))
            add_partition(ui, "encode_intervals", view["cache_key"])
        before = set(plane.tasks)
        backfill(ui, "encode_intervals", list(keys.values()))

        tasks = wait_until(lambda: (len(set(plane.tasks) - before) >= 3 and
                                    [plane.tasks[a] for a in set(plane.tasks) - before]), "three tasks", JOB_TIMEOUT_S)
        ready = wait_until(lambda: all(client.get(f"/files/encode/{i}").json()["state"] == "ready" for i in keys),
                           "three files ready", JOB_TIMEOUT_S)

    assert ready
    by_key = {t.tags["dagster/partition"]: t for t in tasks}
    assert set(by_key) == set(keys.values())
    for doc in fills:
        task, sized = by_key[keys[doc["local_id"]]], size_run("intervals", doc["size_in_bytes"])
        assert (task.cpu, task.memory, task.ephemeral_storage_gib, task.tags["cfdb/size_class"]) == (
            str(sized.size_class.cpu), str(sized.size_class.memory_mib), sized.storage_gib, sized.size_class.name)
        assert "cfdb/job_id" not in task.tags  # a backfill, no request behind it
