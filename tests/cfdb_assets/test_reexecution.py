"""A failed index step keeps the sorted data; re-execution from failure redoes only the index."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from cfdb_assets.definitions import build_definitions
from resources import Settings
from resources.store import MANIFEST, STAGE_SORTED
from tests.helpers import files_for


def job_factory(data_dir: str, catalog: str, name: str) -> dg.JobDefinition:
    """Rebuilds the family job from plain arguments (execute_job needs a reconstructable job)."""
    settings = Settings.from_environ({"CFDB_DATA_DIR": data_dir, "CFDB_CATALOG": catalog})
    return build_definitions(settings).resolve_job_def(name)


def _started_steps(result: dg.ExecuteJobResult) -> set[str]:
    return {e.step_key for e in result.all_events if e.event_type_value == "STEP_START"}


def test_index_failure_keeps_sorted_data_and_reexecution_redoes_only_the_index(settings, store):
    files = files_for(settings)
    record = files.lookup("encode", "ENCFF000BED")
    plan = files.plan(record)
    job, _ = files.request(record, plan)
    key = plan.cache_key
    # A real failure in the index step: a directory sits where its manifest must be written (the
    # index itself was written by the sort, in the sorted step).
    blocker = Path(settings.store) / key / MANIFEST
    blocker.mkdir(parents=True)

    recon = dg.build_reconstructable_job(
        "tests.cfdb_assets.test_reexecution",
        "job_factory",
        reconstructable_kwargs={"data_dir": str(settings.data_dir), "catalog": settings.catalog, "name": "encode_intervals"},
    )
    tags = {"dagster/partition": key, "cfdb/job_id": job.job_id}
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("encode_intervals", [key])
        with dg.execute_job(recon, instance, tags=tags) as first:
            assert not first.success
            assert _started_steps(first) == {"encode__intervals__sorted", "encode__intervals__index"}
            first_run = first.run_id
        stage = Path(settings.store) / key / STAGE_SORTED
        assert stage.is_file() and (Path(settings.store) / key / "data.bed.gz").is_file()
        stage_mtime = stage.stat().st_mtime_ns

        blocker.rmdir()
        assert store.manifest(key) is None  # nothing visible
        options = dg.ReexecutionOptions.from_failure(first_run, instance)
        # Python re-execution does not copy the partition tag (the UI and auto-retry do).
        with dg.execute_job(recon, instance, reexecution_options=options, tags=tags) as second:
            assert second.success
            assert _started_steps(second) == {"encode__intervals__index"}

    assert stage.stat().st_mtime_ns == stage_mtime  # the sorted data was not rebuilt
    manifest = store.valid_manifest(key)
    assert manifest is not None and manifest.index.name == "data.bed.gz.tbi"
