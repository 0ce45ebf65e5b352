"""Housekeeping: what keeps a long-running deployment tidy, in one job on a daily schedule.

Each part lists what it would remove and, unless ``dry_run``, removes exactly that:
- finished job rows older than ``job_rows_days`` (the original's 7-day TTL; never an active job);
- partial uploads a dead writer left (temp files, S3 multipart uploads) and artifact sets that were
  never committed (a stage record, data, no manifest) older than ``stage_grace_hours``, unless a job
  or a run of their partition is still in flight;
- committed artifact sets that no catalog file maps to any more (a checksum or recipe changed),
  unchanged for ``orphan_retention_days``, with their dynamic partitions;
- Dagster runs (and their event logs) that ended more than ``run_history_days`` ago;
- scratch directories of dead run workers.

(Jobs whose run was deleted from Dagster are failed by the reconciler on its next tick, not here.)
``tidy`` is the whole of it over the adapters and a small Dagster facade (tested without a daemon).

(No ``from __future__ import annotations``: Dagster reads the op's config type at runtime.)
"""

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
from pydantic import Field

from cfdb_assets.assets import Tools
from cfdb_assets.build import sweep_stale_scratch
from cfdb_assets.formats import PROCESSED_FAMILIES
from cfdb_assets.names import family_name
from cfdb_assets.planning import OutputOptions, plan_for
from cfdb_assets.registration import REGISTRATION_TAG
from resources import ArtifactStore, Catalog, Ledger

__all__ = ["HousekeepingConfig", "build_housekeeping", "tidy"]

FINISHED = [dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED]
IN_FLIGHT = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
             dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING]
SHOWN = 50  # names listed per part in the run's metadata (the counts are complete)


class HousekeepingConfig(dg.Config):
    """What to tidy, and how old things must be. A launch from the UI is a dry run by default."""

    dry_run: bool = Field(default=True, description="Only list what would be removed")
    job_rows_days: int = Field(default=7, description="Delete finished job rows older than this")
    stage_grace_hours: int = Field(default=24, description="Remove uncommitted sets and partial uploads older than this")
    orphan_retention_days: int = Field(default=30, description="Delete sets no catalog file maps to, unchanged this long")
    run_history_days: int = Field(default=90, description="Delete Dagster runs that ended longer ago than this")


@dataclass
class Tidied:
    """Per part, what was (or, in a dry run, would be) removed."""

    dry_run: bool
    parts: dict[str, list[str]] = field(default_factory=dict)

    def metadata(self) -> dict:
        meta = {"dry_run": dg.MetadataValue.bool(self.dry_run)}
        for part, names in self.parts.items():
            meta[part] = dg.MetadataValue.int(len(names))
            meta[f"{part} (first {SHOWN})"] = dg.MetadataValue.json(names[:SHOWN])
        return meta


class DagsterFacade:
    """The three things housekeeping asks of the Dagster instance."""

    def __init__(self, instance: dg.DagsterInstance):
        self.instance = instance

    def partition_busy(self, key: str) -> bool:
        return bool(self.instance.get_run_records(
            filters=dg.RunsFilter(statuses=IN_FLIGHT, tags={"dagster/partition": key}), limit=1))

    def drop_partition(self, name: str, key: str) -> None:
        if self.instance.has_dynamic_partition(name, key):
            self.instance.delete_dynamic_partition(name, key)

    def old_runs(self, before: datetime, remove: bool, limit: int = 10_000) -> list[str]:
        records = self.instance.get_run_records(
            filters=dg.RunsFilter(statuses=FINISHED, updated_before=before), limit=limit, ascending=True)
        ids = [r.dagster_run.run_id for r in records]
        if remove:
            for run_id in ids:
                self.instance.delete_run(run_id)
        return ids


def tidy(catalog: Catalog, ledger: Ledger, store: ArtifactStore, dagster: DagsterFacade, work_dir: Path,
         served_dccs: list[str], options: OutputOptions, config: HousekeepingConfig,
         now: datetime | None = None) -> Tidied:
    """Run every part (see the module docstring); what was removed, or would be."""
    now = now or datetime.now(UTC)
    remove = not config.dry_run
    grace = now - timedelta(hours=config.stage_grace_hours)
    done = Tidied(config.dry_run)
    done.parts["finished job rows"] = ledger.delete_finished(now - timedelta(days=config.job_rows_days), remove)
    done.parts["partial uploads"] = store.partial_uploads(grace, remove)

    live = set(_live_keys(catalog, served_dccs, options))
    sets = list(store.sets())
    active = ledger.active_keys([s.key for s in sets])
    uncommitted, orphaned = [], []
    for stored in sets:
        if not stored.committed:
            if stored.modified < grace and stored.key not in active and not dagster.partition_busy(stored.key):
                uncommitted.append(stored.key)
        elif stored.key not in live and stored.modified < now - timedelta(days=config.orphan_retention_days):
            orphaned.append(stored.key)
    partition_sets = [family_name(dcc, family) for dcc in served_dccs for family in PROCESSED_FAMILIES]
    for key in orphaned if remove else []:
        for name in partition_sets:  # whichever set holds it (the same bytes may be listed twice)
            dagster.drop_partition(name, key)
    for key in (uncommitted + orphaned) if remove else []:
        store.delete_set(key)
    done.parts["uncommitted artifact sets"] = uncommitted
    done.parts["orphaned artifact sets"] = orphaned
    done.parts["dagster runs"] = dagster.old_runs(now - timedelta(days=config.run_history_days), remove)
    done.parts["scratch directories"] = sweep_stale_scratch(work_dir, remove=remove)
    return done


def _live_keys(catalog: Catalog, dccs: list[str], options: OutputOptions) -> Iterator[str]:
    """The cache key of every processed file the catalog lists now."""
    for dcc in dccs:
        after = None
        while page := catalog.list(dcc, 1000, after):
            for record in page:
                key = plan_for(record, options).cache_key
                if key:
                    yield key
            after = page[-1].local_id


def build_housekeeping(served_dccs: list[str], options: OutputOptions) -> tuple[dg.JobDefinition, dg.ScheduleDefinition]:
    """The ``housekeeping`` job (a dry run unless told otherwise) and its daily schedule (real)."""

    @dg.op(description="Removes old job rows, dead uploads and stage data, orphaned artifact sets, old runs.")
    def tidy_up(context: dg.OpExecutionContext, config: HousekeepingConfig, catalog: Catalog, ledger: Ledger,
                store: ArtifactStore, tools: Tools) -> dg.Output:
        done = tidy(catalog, ledger, store, DagsterFacade(context.instance), Path(tools.work_dir), served_dccs,
                    options, config)
        verb = "would remove" if config.dry_run else "removed"
        for part, names in done.parts.items():
            context.log.info(f"{part}: {verb} {len(names)}")
        context.add_output_metadata(done.metadata())
        return dg.Output(None)

    @dg.job(name="housekeeping", tags={REGISTRATION_TAG: "writer"}, executor_def=dg.in_process_executor,
            description="Tidy the ledger, the store and Dagster's run history (dry run unless dry_run: false).")
    def housekeeping():
        tidy_up()

    schedule = dg.ScheduleDefinition(
        name="housekeeping_daily", job=housekeeping, cron_schedule="30 4 * * *",
        run_config={"ops": {"tidy_up": {"config": {"dry_run": False}}}},
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Daily housekeeping, for real (the defaults: 7-day job rows, 24 h grace, 30-day orphans, 90-day runs).",
    )
    return housekeeping, schedule
