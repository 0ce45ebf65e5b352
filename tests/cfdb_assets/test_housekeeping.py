"""Housekeeping on planted leftovers: a dry run lists exactly them, a real run removes exactly them
and nothing a live file needs (real ledger, local store, Dagster instance, scratch directory)."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import sqlalchemy as sa

from cfdb_assets.definitions import build_definitions
from cfdb_assets.housekeeping import DagsterFacade, HousekeepingConfig, tidy
from cfdb_assets.planning import OutputOptions
from resources import Ledger, SourceSpec, adapters
from resources.ledger import jobs as jobs_table
from tests.helpers import build_artifacts, manifest_for

DAY = 86400
SERVED = ["4dn", "encode", "hubmap"]


def _age(path, days: float) -> None:
    then = time.time() - days * DAY
    for p in [path, *path.rglob("*")] if path.is_dir() else [path]:
        os.utime(p, (then, then))


def _spec(key: str) -> SourceSpec:
    return SourceSpec(key, "encode", f"ENCFF{key[:6]}", "BED", "intervals", "md5:" + "0" * 32, 10)


def test_housekeeping_lists_then_removes_exactly_the_planted_leftovers(settings, store, tmp_path):
    ledger = Ledger(url=settings.ledger_url)
    live_key, built = build_artifacts(settings, "encode", "ENCFF000BED")  # a live, committed set
    assert built.success
    root = Path(store.root)

    # Job rows: one finished 10 days ago (stale), one finished today, one active.
    old, recent = (ledger.request(_spec(k * 32), timedelta(hours=1))[0] for k in "ab")
    active = ledger.request(_spec(busy := "c" * 32), timedelta(hours=1))[0]
    for job in (old, recent):
        ledger.finish(job.job_id, succeeded=True)
    with ledger.engine.begin() as conn:
        conn.execute(sa.update(jobs_table).where(jobs_table.c.job_id == old.job_id)
                     .values(finished_at=datetime.now(UTC) - timedelta(days=10)))
    # Store: an uncommitted set of a dead run (2 days old), one whose job is active, one too young;
    # an orphaned committed set (no catalog file maps to it, 40 days old); a dead writer's temp file.
    stale, young, orphan = "d" * 32, "e" * 32, "f" * 32
    for key in (stale, busy, young):
        store.put_json(key, "stage-sorted.json", {"v": 1})
    store.put_json(orphan, "manifest.json", manifest_for(orphan, ("data.bed.gz", 5)).to_json())
    (tmp_path / "data.bed.gz").write_bytes(b"12345")
    store.put_file(orphan, "data.bed.gz", tmp_path / "data.bed.gz")
    partial = root / live_key / ".tmp-dead-data.bed.gz"
    partial.write_bytes(b"x")
    for path in (partial, root / stale, root / busy):
        _age(path, 2)
    _age(root / orphan, 40)
    _age(root / live_key, 40)  # old, but the catalog still maps to it
    # Scratch: a dead worker's directory (no owner, old).
    scratch = settings.work_dir / "dead-run"
    scratch.mkdir(parents=True)
    _age(scratch, 1)

    parts = adapters(settings)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("encode_intervals", [orphan, live_key])
        finished = instance.create_run_for_job(
            build_definitions(settings).resolve_job_def("encode_intervals"), tags={"dagster/partition": live_key})
        instance.report_run_failed(finished)

        def run(dry_run: bool):
            return tidy(parts.catalog, ledger, store, DagsterFacade(instance), settings.work_dir, SERVED,
                        OutputOptions.from_settings(settings),
                        HousekeepingConfig(dry_run=dry_run, run_history_days=0)).parts

        expected = {
            "finished job rows": [old.job_id],
            "partial uploads": [f"{live_key}/.tmp-dead-data.bed.gz"],
            "uncommitted artifact sets": [stale],
            "orphaned artifact sets": [orphan],
            "dagster runs": [finished.run_id],
            "scratch directories": ["dead-run"],
        }
        assert run(dry_run=True) == expected
        assert run(dry_run=True) == expected  # a dry run changed nothing
        assert run(dry_run=False) == expected
        assert {k: v for k, v in run(dry_run=True).items() if v} == {}  # nothing left to do

        assert instance.get_dynamic_partitions("encode_intervals") == [live_key]
        assert instance.get_run_by_id(finished.run_id) is None
    assert ledger.job(old.job_id) is None and ledger.job(recent.job_id) and ledger.job(active.job_id)
    assert sorted(s.key for s in store.sets()) == sorted([busy, young, live_key])
    assert store.valid_manifest(live_key) is not None  # the live file is still served
    assert not scratch.exists()


def test_the_job_is_a_dry_run_from_the_launchpad_and_real_on_its_schedule(settings):
    defs = build_definitions(settings)
    old, _ = Ledger(url=settings.ledger_url).request(_spec("a" * 32), timedelta(hours=1))
    ledger = Ledger(url=settings.ledger_url)
    ledger.finish(old.job_id, succeeded=True)
    with ledger.engine.begin() as conn:
        conn.execute(sa.update(jobs_table).where(jobs_table.c.job_id == old.job_id)
                     .values(finished_at=datetime.now(UTC) - timedelta(days=10)))

    with dg.instance_for_test() as instance:
        dry = defs.resolve_job_def("housekeeping").execute_in_process(instance=instance)
        (output,) = [e for e in dry.all_events if e.event_type == dg.DagsterEventType.STEP_OUTPUT]
        meta = output.step_output_data.metadata
        assert (meta["dry_run"].value, meta["finished job rows"].value) == (True, 1)
        assert ledger.job(old.job_id) is not None

        schedule = defs.get_schedule_def("housekeeping_daily")
        (request,) = schedule.evaluate_tick(dg.build_schedule_context(instance=instance)).run_requests
        real = defs.resolve_job_def("housekeeping").execute_in_process(instance=instance, run_config=request.run_config)
        assert real.success
    assert ledger.job(old.job_id) is None
