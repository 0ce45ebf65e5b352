"""The code location, assets and sensors, run for real on an in-process Dagster instance."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pytest

from cfdb_assets.definitions import build_definitions, build_families
from cfdb_assets.names import ATTEMPT_TAG, JOB_ID_TAG
from cfdb_assets.formats import PROCESSED_FAMILIES
from resources import Ledger
from tests.helpers import build_artifacts, files_for


def _materialization(result: dg.ExecuteInProcessResult, stage: str) -> dict:
    events = [e for e in result.get_asset_materialization_events() if e.asset_key.path[-1] == stage]
    assert len(events) == 1
    return {k: v.value for k, v in events[0].materialization.metadata.items()}


def test_definitions_load_with_two_assets_and_a_job_per_dcc_and_family(settings):
    defs = build_definitions(settings)
    keys = {key.to_user_string() for key in defs.resolve_asset_graph().get_all_asset_keys()}
    for dcc in settings.dccs:
        for family in PROCESSED_FAMILIES:
            assert {f"{dcc}/{family}/sorted", f"{dcc}/{family}/index"} <= keys
            assert defs.resolve_job_def(f"{dcc}_{family}").executor_def.name == "in_process"
    assert {s.name for s in defs.sensors} == {"on_demand", "jobs_succeeded", "jobs_failed", "jobs_canceled"}


def test_bed_partition_publishes_data_index_and_manifest_with_operator_metadata(settings, store):
    key, result = build_artifacts(settings, "encode", "ENCFF000BED")
    assert result.success
    manifest = store.valid_manifest(key)
    assert manifest.data.name == "data.bed.gz"
    assert manifest.index.name == "data.bed.gz.tbi"
    assert manifest.index_type == "tbi"
    assert manifest.source.local_id == "ENCFF000BED"
    meta = _materialization(result, "sorted")
    assert meta["dcc"] == "encode" and meta["local_id"] == "ENCFF000BED"
    assert meta["source_bytes"] > 0 and meta["artifact_bytes"] == manifest.data.size
    assert "samtools" in meta["tools"] and meta["reused"] is False
    assert _materialization(result, "index")["file"] == "http://localhost:8000/files/encode/ENCFF000BED"


def test_published_bams_carry_no_server_paths_so_rebuilds_are_byte_identical(settings, store):
    import pysam

    instance = dg.DagsterInstance.ephemeral()
    key, _ = build_artifacts(settings, "encode", "ENCFF000SAM", instance)
    first = store.manifest(key).data.sha256
    header = pysam.AlignmentFile(str(Path(settings.store) / key / "data.bam")).header.to_dict()
    assert not any(str(settings.data_dir) in json.dumps(pg) for pg in header.get("PG", []))
    config = {"ops": {op: {"config": {"force": True}} for op in ("encode__alignments__sorted", "encode__alignments__index")}}
    build_artifacts(settings, "encode", "ENCFF000SAM", instance, run_config=config)
    assert store.manifest(key).data.sha256 == first


def test_job_stages_and_run_id_are_written_to_the_ledger(settings):
    key, result = build_artifacts(settings, "encode", "ENCFF000SAM")
    job = Ledger(url=settings.ledger_url).latest_jobs([key])[key]
    assert job.stages == ("data", "index")
    assert job.run_id == result.run_id
    assert job.state == "running"  # terminal states come from the run-status sensor
    assert job.progress == "storing the sorted data"  # the last thing the steps said (samtools indexed as it sorted)


def test_existing_artifact_set_is_reused_and_force_rebuilds(settings, store):
    instance = dg.DagsterInstance.ephemeral()
    key, _ = build_artifacts(settings, "encode", "ENCFF000BED", instance)
    before = store.manifest(key).created_at
    _, again = build_artifacts(settings, "encode", "ENCFF000BED", instance)
    assert _materialization(again, "sorted")["reused"] is True
    assert _materialization(again, "index")["reused"] is True
    config = {"ops": {op: {"config": {"force": True}} for op in ("encode__intervals__sorted", "encode__intervals__index")}}
    _, forced = build_artifacts(settings, "encode", "ENCFF000BED", instance, run_config=config)
    assert forced.success
    assert _materialization(forced, "sorted")["reused"] is False
    assert store.manifest(key).seconds and store.manifest(key).created_at >= before


def test_checksum_mismatch_fails_the_run_and_publishes_nothing(settings, store):
    key, result = build_artifacts(settings, "encode", "ENCFF000BAD")
    assert not result.success
    assert store.manifest(key) is None
    assert store.sorted_stage(key) is None
    assert list(settings.work_dir.iterdir()) == []  # the run's scratch space is gone on failure too


def test_on_demand_sensor_requests_each_queued_job_once_with_its_partition(settings):
    files = files_for(settings)
    defs = build_definitions(settings)
    sensor = defs.get_sensor_def("on_demand")
    records = [files.lookup("encode", "ENCFF000BED"), files.lookup("encode", "ENCFF000SAM")]
    jobs = [files.request(r, files.plan(r))[0] for r in records]

    ledger = Ledger(url=settings.ledger_url)

    def tick(instance, cursor=None):
        context = dg.build_sensor_context(instance=instance, cursor=cursor, resources={"ledger": ledger})
        return sensor(context)

    with dg.instance_for_test() as instance:
        result = tick(instance)
        assert {r.run_key for r in result.run_requests} == {f"{j.job_id}:1" for j in jobs}
        by_key = {r.run_key: r for r in result.run_requests}
        for job, record in zip(jobs, records, strict=True):
            request = by_key[f"{job.job_id}:1"]
            assert request.partition_key == job.cache_key
            assert (request.tags[JOB_ID_TAG], request.tags[ATTEMPT_TAG]) == (job.job_id, "1")
            assert request.job_name == f"encode_{files.plan(record).route.family}"
            assert ledger.job(job.job_id).state == "requested"  # never read by a tick again
        added = {k for req in result.dynamic_partitions_requests for k in req.partition_keys}
        assert added == {j.cache_key for j in jobs}

        # The next tick requests nothing new ...
        again = tick(instance, result.cursor)
        assert not again.run_requests
        # ... until a new job appears (a request after a final failure gets a new job id).
        ledger.finish(jobs[0].job_id, succeeded=False, error="transient")
        retry, created = files.request(records[0], files.plan(records[0]))
        assert created
        third = tick(instance, again.cursor)
        assert [r.run_key for r in third.run_requests] == [f"{retry.job_id}:1"]


def test_on_demand_sensor_finishes_jobs_whose_run_ended_without_a_status_sensor(settings):
    from cfdb_assets.sensors import build_on_demand_sensor

    ledger = Ledger(url=settings.ledger_url)
    with dg.instance_for_test() as instance:
        key, result = build_artifacts(settings, "encode", "ENCFF000BED", instance)
        assert result.success and ledger.latest_jobs([key])[key].state == "running"
        sensor = build_on_demand_sensor(build_families(settings))
        sensor(dg.build_sensor_context(instance=instance, resources={"ledger": ledger}))
    assert ledger.latest_jobs([key])[key].state == "succeeded"


def test_a_job_for_a_dcc_this_code_location_lacks_fails_visibly(tmp_path, demo_dir):
    from resources import Settings

    everything = Settings.from_environ({"CFDB_DATA_DIR": str(tmp_path / "d"), "CFDB_CATALOG": str(demo_dir / "catalog.jsonl")})
    encode_only = Settings.from_environ({**{"CFDB_DCCS": "encode"}, "CFDB_DATA_DIR": str(tmp_path / "d"),
                                         "CFDB_CATALOG": str(demo_dir / "catalog.jsonl")})
    files = files_for(everything)
    record = files.lookup("4dn", "4DNFIVCF0001")
    job, _ = files.request(record, files.plan(record))
    ledger = Ledger(url=everything.ledger_url)
    sensor = build_definitions(encode_only).get_sensor_def("on_demand")
    with dg.instance_for_test() as instance:
        result = sensor(dg.build_sensor_context(instance=instance, resources={"ledger": ledger}))
    assert not result.run_requests
    failed = ledger.job(job.job_id)
    assert failed.state == "failed" and "CFDB_DCCS" in failed.error



def test_the_code_location_refuses_to_load_on_local_only_production_settings(tmp_path):
    # The daemon and every run worker load this code location: in production they refuse a private
    # SQLite ledger, a local store or catalog, with the sentence that names the variable to set.
    from resources import Settings, SettingsError

    settings = Settings.from_environ({"CFDB_PROFILE": "production", "CFDB_DATA_DIR": str(tmp_path)})
    with pytest.raises(SettingsError, match=r"CFDB_LEDGER_URL.*CFDB_STORE.*CFDB_CATALOG"):
        build_definitions(settings)
