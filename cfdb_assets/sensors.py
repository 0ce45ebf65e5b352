"""Sensors: the on-demand sensor turns queued ledger jobs into runs and reconciles the jobs in
flight; run-status sensors settle a run's job the moment it ends. All are thin: bounded ledger
queries per tick, no fetching, no tools.
"""

import time
from dataclasses import dataclass
from datetime import UTC, datetime

import dagster as dg

from cfdb_assets.assets import FamilyDefs
from cfdb_assets.ecs_status import task_states
from cfdb_assets.names import ATTEMPT_TAG, JOB_ID_TAG, family_name, run_key
from cfdb_assets.reconcile import Action, decide, outcome_of, report_start, runs_of, settle
from cfdb_assets.sizing import size_run
from resources import Job, Ledger

__all__ = ["Policy", "build_on_demand_sensor", "build_run_status_sensors"]

BATCH = 200  # queued jobs turned into runs per tick (each run costs the daemon ~0.3 s to create)
RECONCILE_BATCH = 200  # in-flight jobs checked per tick
TICK_BUDGET_S = 20.0  # well inside the 60 s sensor timeout, however slow the ledger is
PARTITION_TAG = "dagster/partition"
LISTEN_POLL_S = 0.1  # how often a listening tick looks for a queued job (one indexed lookup)


@dataclass(frozen=True)
class Policy:
    """How many attempts a job gets, and how long a requested run may take to appear."""

    max_attempts: int = 3
    # A sensor's ticks are serial and a tick creates its runs before the next one starts, so a
    # requested job without a run after this long lost its request (a daemon killed mid-tick);
    # asking again is safe: the run_key makes a repeat a no-op.
    request_grace_s: float = 30.0
    # Runs asked for but not started, at most: the ledger is the queue, and Dagster creates runs one
    # at a time (~0.3-1.7 s each on SQLite storage, bench/scale.py), so a tick never creates more
    # than a window of them and every tick (the reconciler's included) stays short.
    run_window: int = 16
    sized_runs: bool = False  # a source too big for any worker fails here, before a run is launched
    # Dagster's daemon evaluates sensors on a 5 s loop whatever their interval (dagster-notes §2.1),
    # so a request that misses a tick would wait ~5 s for the next. A tick that finds no queued job
    # listens this long for one instead (polling the ledger), and asks for its run the moment it
    # lands. Kept well under the loop's period, or the next tick is skipped (a 10 s gap).
    listen_s: float = 0.0


def build_on_demand_sensor(
    families: list[FamilyDefs], minimum_interval_seconds: int = 2, policy: Policy | None = None
) -> dg.SensorDefinition:
    """One sensor for every family job. Each tick: settle a batch of in-flight jobs against their
    runs (the reconciler walks them all, a batch per tick, from the cursor), then request a run for
    each queued job (``run_key = job_id:attempt``) and mark it ``requested``, so no tick reads it
    again; its partition is added in the same SensorResult."""
    policy = policy or Policy()
    by_name = {family.spec.name: family for family in families}
    jobs = [job for family in families for job in family.definitions.jobs or []]

    @dg.sensor(
        name="on_demand",
        jobs=jobs,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Turns cache misses recorded in the request ledger into partitioned runs, and "
        "keeps every job in flight true to its run.",
    )
    def on_demand(context: dg.SensorEvaluationContext, ledger: Ledger):
        deadline = time.monotonic() + TICK_BUDGET_S
        position = _reconcile(context.instance, ledger, int(context.cursor or 0), policy)
        partitions: dict[str, list[str]] = {}
        run_requests, requested = [], []
        room = max(0, policy.run_window - ledger.requested_count())
        queued = ledger.queued(limit=min(BATCH, room)) if room else []
        if room and not queued and policy.listen_s > 0:
            queued = _listen(ledger, min(BATCH, room), policy.listen_s)
        for job, src in queued:
            if run_requests and time.monotonic() > deadline:
                break  # at least one run per tick, however slow the ledger
            name = family_name(src.dcc, src.family)
            if name not in by_name:
                # The API and this code location disagree on CFDB_DCCS: fail the job, visibly.
                ledger.finish(job.job_id, succeeded=False, error=(
                    f"This server has no pipeline for DCC {src.dcc!r} ({src.family}); "
                    "CFDB_DCCS differs between the API and Dagster."))
                continue
            refusal = size_run(src.family, src.size).refusal if policy.sized_runs else None
            if refusal:
                ledger.finish(job.job_id, succeeded=False, error=refusal, permanent=True)
                continue
            partitions.setdefault(name, []).append(job.cache_key)
            # The partition's own tags (its file, its worker size) join these from the job's
            # partitioned config, as they do for a backfill (cfdb_assets.definitions).
            tags = {JOB_ID_TAG: job.job_id, ATTEMPT_TAG: str(job.attempt)}
            run_requests.append(dg.RunRequest(job_name=name, partition_key=job.cache_key,
                                              run_key=run_key(job.job_id, job.attempt), tags=tags))
            requested.append(job.job_id)
        # Marked before the daemon creates the runs: a run that never appears is asked for again by
        # the reconciler after the grace period; a repeated request of the same key is a no-op.
        ledger.mark_requested(requested)
        if not run_requests:
            return dg.SensorResult(skip_reason="No new requests.", cursor=str(position))
        return dg.SensorResult(
            run_requests=run_requests,
            dynamic_partitions_requests=[
                by_name[name].partitions.build_add_request(sorted(set(keys))) for name, keys in partitions.items()
            ],
            cursor=str(position),
        )

    return on_demand


def _listen(ledger: Ledger, limit: int, seconds: float) -> list:
    """Wait up to ``seconds`` for a queued job; then the queued jobs (a burst's first request
    waits one more poll, so its neighbours join the same tick)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(LISTEN_POLL_S)
        if ledger.has_queued():
            time.sleep(LISTEN_POLL_S)
            return ledger.queued(limit=limit)
    return []


def _reconcile(instance: dg.DagsterInstance, ledger: Ledger, after_id: int, policy: Policy) -> int:
    """Settle one batch of in-flight jobs after ledger row ``after_id``; the next position (0 once
    the walk reached the end, so the next tick starts over)."""
    batch = ledger.in_flight(after_id, limit=RECONCILE_BATCH)
    runs = runs_of(instance, batch)
    states = task_states(runs.values())
    now = datetime.now(UTC)
    for job in batch:
        _settle_job(instance, ledger, job, runs.get(job.job_id), now, policy, states)
    return batch[-1].id if len(batch) == RECONCILE_BATCH else 0


def _settle_job(instance, ledger: Ledger, job: Job, record, now: datetime, policy: Policy,
                states: dict[str, str] | None = None) -> Action:
    outcome = outcome_of(instance, record)
    action = decide(job, outcome, now, policy.max_attempts, policy.request_grace_s)
    if action != Action.WAIT:
        settle(ledger, job, outcome, action)
    if action in (Action.WAIT, Action.RUNNING):
        report_start(ledger, job, outcome, states)
    return action


def build_run_status_sensors(minimum_interval_seconds: int = 10, policy: Policy | None = None) -> list:
    """One sensor for the runs that end (success, failure, cancel): settles their jobs, by the same
    decision the reconciler makes (``cfdb_assets.reconcile``). Every 10 s: the on-demand sensor's
    reconciler settles ended runs on its own 2 s ticks too, and a file is ready when its manifest is
    stored, whoever settles the job; so these only back the reconciler up, and need not write a
    tick record every 2 s each, all day."""
    policy = policy or Policy()

    common = {"minimum_interval_seconds": minimum_interval_seconds, "default_status": dg.DefaultSensorStatus.RUNNING}

    @dg.run_status_sensor(name="jobs_succeeded", run_status=dg.DagsterRunStatus.SUCCESS, **common)
    def jobs_succeeded(context: dg.RunStatusSensorContext, ledger: Ledger):
        _settle_run(context, ledger, policy)
        # Any successful build of a partition (a UI re-execution of a failed run, a backfill) ends
        # the failure the ledger remembers for it: the file is ready now.
        key = context.dagster_run.tags.get(PARTITION_TAG)
        if key and ledger.clear_failure(key):
            context.log.info(f"Partition {key} built by run {context.dagster_run.run_id}: its failure is cleared.")

    @dg.run_failure_sensor(name="jobs_failed", **common)
    def jobs_failed(context: dg.RunFailureSensorContext, ledger: Ledger):
        _settle_run(context, ledger, policy)

    @dg.run_status_sensor(name="jobs_canceled", run_status=dg.DagsterRunStatus.CANCELED, **common)
    def jobs_canceled(context: dg.RunStatusSensorContext, ledger: Ledger):
        _settle_run(context, ledger, policy)

    return [jobs_succeeded, jobs_failed, jobs_canceled]


def _settle_run(context: dg.RunStatusSensorContext, ledger: Ledger, policy: Policy) -> None:
    run = context.dagster_run
    job = ledger.job(run.tags[JOB_ID_TAG]) if run.tags.get(JOB_ID_TAG) else None
    if job is None or not job.active or run.tags.get(ATTEMPT_TAG, "1") != str(job.attempt):
        return  # not ours, already settled, or a run of an earlier attempt
    record = context.instance.get_run_record_by_id(run.run_id)
    _settle_job(context.instance, ledger, job, record, datetime.now(UTC), policy)
