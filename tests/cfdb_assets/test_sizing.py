"""Run sizing: the table, the refusal, and the tags every run of a partition gets (sensor and
backfill alike, through the family job's partitioned config)."""

from __future__ import annotations

from datetime import timedelta

import dagster as dg
import pytest
from dagster._core.definitions.partitions.context import partition_loading_context  # no public API

from cfdb_assets.definitions import build_definitions
from cfdb_assets.names import ATTEMPT_TAG, JOB_ID_TAG
from cfdb_assets.sizing import GIB, SIZE_CLASSES, size_run
from resources import Settings
from tests.helpers import files_for

# Fargate's valid (cpu, memory MiB) pairs: memory range and step per cpu.
FARGATE = {1024: (2048, 8192, 1024), 2048: (4096, 16384, 1024), 4096: (8192, 30720, 1024),
           8192: (16384, 61440, 4096), 16384: (32768, 122880, 8192)}


@pytest.mark.parametrize("size_class", SIZE_CLASSES, ids=lambda c: c.name)
def test_every_class_is_a_valid_fargate_shape(size_class):
    low, high, step = FARGATE[size_class.cpu]
    assert low <= size_class.memory_mib <= high and size_class.memory_mib % step == 0


@pytest.mark.parametrize(("family", "size", "expected"), [
    ("alignments", 200 * 2**20, ("small", 21, 1024, 4096, 2, "1024M")),
    ("alignments", 5 * GIB, ("medium", 19 + 2, 2048, 8192, 2, "2048M")),  # 3 x 5 + 4 = 19 -> Fargate's least
    ("intervals", 5 * GIB, ("medium", 34, 2048, 8192, 2, "2048M")),  # 6 x 5 + 4: the spill is plain text
    ("alignments", 20 * GIB, ("large", 64, 4096, 16384, 4, "2048M")),
    ("alignments", 60 * GIB, ("huge", 184, 8192, 32768, 8, "2048M")),
])
def test_a_source_gets_the_class_and_disk_its_size_needs(family, size, expected):
    sized = size_run(family, size)
    tags = sized.tags(fargate=True)
    assert (tags["cfdb/size_class"], int(tags["ecs/ephemeral_storage"]), int(tags["ecs/cpu"]),
            int(tags["ecs/memory"]), int(tags["cfdb/threads"]), tags["cfdb/sort_memory"]) == expected
    assert sized.refusal is None
    assert 1800 <= int(tags["dagster/max_runtime"]) <= 4 * 3600


def test_runtime_grows_with_the_source_up_to_the_original_cap():
    runtimes = [size_run("alignments", n * GIB).max_runtime_s for n in (0, 1, 10, 60)]
    assert runtimes == sorted(runtimes) and runtimes[0] == 1800 and runtimes[-1] == 4 * 3600


def test_a_source_too_big_for_any_worker_is_refused_with_a_sentence():
    sized = size_run("intervals", 40 * GIB)  # 6 x 40 + 4 = 244 GiB of disk
    assert sized.storage_gib == 200
    assert sized.refusal.startswith("The source is 40.0 GiB; building it needs about 244 GiB of worker disk")
    assert size_run("alignments", 40 * GIB).refusal is None  # 124 GiB: a BAM spills less


def test_an_unknown_size_gets_a_medium_worker_and_no_refusal():
    sized = size_run("alignments", None)
    assert (sized.size_class.name, sized.storage_gib, sized.refusal) == ("medium", 50, None)


def test_on_this_machine_runs_get_only_the_class():
    assert size_run("alignments", 5 * GIB).tags(fargate=False) == {"cfdb/size_class": "medium"}


@pytest.mark.parametrize("sized", [False, True])
def test_a_sensor_run_carries_its_file_and_size_as_a_backfill_run_does(tmp_path, demo_dir, sized):
    settings = Settings.from_environ({
        "CFDB_DATA_DIR": str(tmp_path / "data"), "CFDB_CATALOG": str(demo_dir / "catalog.jsonl"),
        "CFDB_SIZED_RUNS": str(sized).lower()})
    files = files_for(settings)
    record = files.lookup("encode", "ENCFF000SAM")
    job, _ = files.request(record, files.plan(record))
    defs = build_definitions(settings)
    sensor = defs.get_sensor_def("on_demand")
    expected = {"cfdb/cache_key": job.cache_key, "cfdb/dcc": "encode", "cfdb/local_id": "ENCFF000SAM",
                "cfdb/format": "SAM", "cfdb/size_class": "small"}

    with dg.instance_for_test() as instance, partition_loading_context(dynamic_partitions_store=instance):
        instance.add_dynamic_partitions("encode_alignments", [job.cache_key])  # as the tick's request does
        context = dg.build_sensor_context(instance=instance, resources={"ledger": files.ledger},
                                          repository_def=defs.get_repository_def())
        (request,) = sensor.evaluate_tick(context).run_requests  # resolved as the daemon resolves it
        # What a backfill's run of the partition gets (the backfill daemon asks the job the same way).
        backfill_tags = defs.resolve_job_def("encode_alignments").get_tags_for_partition_key(job.cache_key, selected_asset_keys=None)

    assert {k: request.tags.get(k) for k in expected} == expected
    assert (request.tags[JOB_ID_TAG], request.tags[ATTEMPT_TAG]) == (job.job_id, "1")
    assert ("ecs/cpu" in request.tags) is sized
    if sized:
        assert (request.tags["ecs/cpu"], request.tags["ecs/ephemeral_storage"], request.tags["cfdb/threads"]) == (
            "1024", "21", "2")
    assert backfill_tags.items() <= request.tags.items() and expected.items() <= backfill_tags.items()


def test_a_source_too_big_for_any_worker_fails_its_job_before_a_run_is_launched(tmp_path, demo_dir):
    from cfdb_assets.sensors import Policy, build_on_demand_sensor
    from cfdb_assets.definitions import build_families
    from resources import Ledger, SourceSpec

    settings = Settings.from_environ({"CFDB_DATA_DIR": str(tmp_path), "CFDB_CATALOG": str(demo_dir / "catalog.jsonl")})
    ledger = Ledger(url=settings.ledger_url)
    ledger.check()
    job, _ = ledger.request(SourceSpec("f" * 32, "encode", "ENCFFHUGE", "BED", "intervals", "md5:" + "0" * 32,
                                       size=40 * GIB), failure_retry=timedelta(hours=1))
    sensor = build_on_demand_sensor(build_families(settings), policy=Policy(sized_runs=True))
    with dg.instance_for_test() as instance:
        result = sensor(dg.build_sensor_context(instance=instance, resources={"ledger": ledger}))

    assert not result.run_requests
    failed = ledger.job(job.job_id)
    assert (failed.state, failed.error_kind) == ("failed", "permanent")
    assert failed.error.startswith("The source is 40.0 GiB; building it needs about 244 GiB")


def test_the_tools_follow_the_worker_a_run_got():
    from cfdb_assets.assets import Tools

    tools = Tools(work_dir="/tmp/w", threads=2, sort_memory="768M", compression_level=4)
    sized = tools.builder(None, None, None, None, run_tags={"cfdb/threads": "8", "cfdb/sort_memory": "2048M"})
    local = tools.builder(None, None, None, None, run_tags={})

    assert (sized.tools.threads, sized.tools.sort_memory, sized.tools.compression_level) == (8, "2048M", 4)
    assert (local.tools.threads, local.tools.sort_memory) == (2, "768M")


def test_auto_sort_memory_follows_the_run_machine(monkeypatch):
    from cfdb_assets.assets import Tools

    monkeypatch.setattr("cfdb_assets.memory.available_memory", lambda: 6 * 1024**3)
    tools = Tools(work_dir="/tmp/w", threads=2, sort_memory="auto", compression_level=4)
    assert tools.builder(None, None, None, None).tools.sort_memory == "1536M"  # half of 6 GiB, per thread
    # A sized run's tag still wins over the machine.
    sized = tools.builder(None, None, None, None, run_tags={"cfdb/threads": "4", "cfdb/sort_memory": "2048M"})
    assert sized.tools.sort_memory == "2048M"
