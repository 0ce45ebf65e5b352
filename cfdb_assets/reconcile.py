"""Keeping the ledger true to Dagster: every job that is not finished is moved to the state its run
proves, whatever was missed (a ledger outage, a sensor tick that failed, a daemon restart).

``decide`` is the whole policy, a pure function of a job and its run's outcome (table-tested);
``outcome_of`` reads a run's outcome from the instance; ``settle`` applies a decision. The run-status
sensors settle a run as soon as it ends; the on-demand sensor's tick settles the rest in batches.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

import dagster as dg

from cfdb_assets.names import ATTEMPT_TAG, JOB_ID_TAG, PERMANENT_KEY
from cfdb_assets.sizing import SIZE_CLASS_TAG
from cfdb_assets.tools import scrub
from resources import Job, JobState, Ledger

__all__ = ["Action", "RunOutcome", "decide", "outcome_of", "report_start", "settle", "worker_of"]

IN_PROGRESS = {
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
}
# Run failures that say the worker went away, not that the build went wrong.
LOST_WORKER_REASONS = {"UNEXPECTED_TERMINATION", "RUN_WORKER_RESTART", "START_TIMEOUT"}
INTERRUPTED = "DagsterExecutionInterruptedError"
LOST_WORKER = "The worker stopped before the build finished"
WILL_RETRY_TAG = "dagster/will_retry"
FAILURE_REASON_TAG = "dagster/failure_reason"


class Action(StrEnum):
    WAIT = "wait"  # the run is in progress, or Dagster will retry it
    RUNNING = "running"  # the run started: record it
    SUCCEED = "succeed"
    RETRY = "retry"  # a transient failure with attempts left: the same job, a new run
    REQUEST_AGAIN = "request_again"  # asked for a run that never appeared: ask again
    FAIL = "fail"


@dataclass(frozen=True)
class RunOutcome:
    """What the instance knows of the run of a job's current attempt (``status`` None: no run)."""

    status: dg.DagsterRunStatus | None
    run_id: str | None = None
    will_retry: bool = False  # Dagster's run retries will launch another run of this attempt
    error: str | None = None  # the sentence a user sees
    permanent: bool = False
    lost_worker: bool = False
    worker: str | None = None  # the ECS task and its size, as JSON, once the launcher started one


def decide(job: Job, outcome: RunOutcome, now: datetime, max_attempts: int, request_grace_s: float) -> Action:
    """What to do with an active job, given its run's outcome."""
    if outcome.status is None:
        if job.state == JobState.RUNNING:
            return Action.FAIL  # its run started, then was deleted from Dagster
        waited = (now - job.requested_at).total_seconds() if job.requested_at else 0.0
        return Action.REQUEST_AGAIN if job.state == JobState.REQUESTED and waited > request_grace_s else Action.WAIT
    if outcome.status in IN_PROGRESS:
        started = outcome.status == dg.DagsterRunStatus.STARTED
        return Action.RUNNING if started and (job.state != JobState.RUNNING or job.run_id != outcome.run_id) else Action.WAIT
    if outcome.status == dg.DagsterRunStatus.SUCCESS:
        return Action.SUCCEED
    if outcome.status == dg.DagsterRunStatus.FAILURE and outcome.will_retry:
        return Action.WAIT
    if outcome.status == dg.DagsterRunStatus.FAILURE and not outcome.permanent and job.attempt < max_attempts:
        return Action.RETRY
    return Action.FAIL


def settle(ledger: Ledger, job: Job, outcome: RunOutcome, action: Action) -> None:
    """Write a decision to the ledger (each write is conditional: a late or repeated one is a no-op)."""
    if action == Action.RUNNING:
        ledger.mark_running(job.job_id, outcome.run_id or "")
    elif action == Action.SUCCEED:
        ledger.finish(job.job_id, succeeded=True)
    elif action == Action.REQUEST_AGAIN:
        ledger.requeue(job.job_id, job.attempt)
    elif action == Action.RETRY:
        reason = f"{LOST_WORKER}; the build will be retried." if outcome.lost_worker else (
            f"{outcome.error} The build will be retried.")
        ledger.requeue(job.job_id, job.attempt, error=reason)
    elif action == Action.FAIL:
        ledger.finish(job.job_id, succeeded=False, error=_final_error(job, outcome), permanent=outcome.permanent)


def _final_error(job: Job, outcome: RunOutcome) -> str:
    if outcome.status is None:
        return "The Dagster run of this job no longer exists (deleted); request the file again."
    if outcome.status == dg.DagsterRunStatus.CANCELED:
        return "The run was canceled."
    if outcome.lost_worker:
        return f"{LOST_WORKER}, {job.attempt} times; request the file again later."
    error = outcome.error or "The run failed."
    if job.attempt > 1:  # inside the sentence: "… failed (after 3 attempts)."
        error = f"{error.removesuffix('.')} (after {job.attempt} attempts)."
    return error


def runs_of(instance: dg.DagsterInstance, jobs: list[Job]) -> dict[str, dg.RunRecord]:
    """The newest run of each job's current attempt (retries of a run carry its tags), one query."""
    if not jobs:
        return {}
    records = instance.get_run_records(filters=dg.RunsFilter(tags={JOB_ID_TAG: [j.job_id for j in jobs]}))
    attempts = {j.job_id: str(j.attempt) for j in jobs}
    newest: dict[str, dg.RunRecord] = {}
    for record in records:  # newest first
        tags = record.dagster_run.tags
        job_id = tags.get(JOB_ID_TAG)
        if job_id in attempts and tags.get(ATTEMPT_TAG, "1") == attempts[job_id] and job_id not in newest:
            newest[job_id] = record
    return newest


def outcome_of(instance: dg.DagsterInstance, record: dg.RunRecord | None) -> RunOutcome:
    """A run's outcome; for a failure, its user-facing error and whether it is permanent."""
    if record is None:
        return RunOutcome(None)
    run = record.dagster_run
    if run.status != dg.DagsterRunStatus.FAILURE:
        return RunOutcome(run.status, run.run_id, worker=worker_of(run.tags))
    if record.start_time is None:  # never started: the launch failed (RunTask refused, no capacity)
        return RunOutcome(run.status, run.run_id, will_retry=run.tags.get(WILL_RETRY_TAG) == "true",
                          error=_launch_failure(instance, run.run_id))
    overran = _max_runtime(instance, run.run_id)
    if overran:  # stopped by run monitoring: the same bytes on the same worker would overrun again
        return RunOutcome(run.status, run.run_id, will_retry=run.tags.get(WILL_RETRY_TAG) == "true",
                          error=overran, permanent=True, worker=worker_of(run.tags))
    error, permanent, step = _failure(instance, run.run_id)
    reason = run.tags.get(FAILURE_REASON_TAG)
    # No step failed (the worker died mid-step and was marked failed from outside), a step was
    # interrupted (the worker was stopped), or Dagster says so.
    lost = step == INTERRUPTED or reason in LOST_WORKER_REASONS or (step is None and reason is None)
    return RunOutcome(
        run.status,
        run.run_id,
        will_retry=run.tags.get(WILL_RETRY_TAG) == "true",
        error=error,
        permanent=permanent and not lost,
        lost_worker=lost,
        worker=worker_of(run.tags),
    )


# The run tags that describe its worker: set by the EcsRunLauncher (task ARN) and by the partition's
# sizing (cfdb_assets.sizing); none of them with the local launcher.
WORKER_TAGS = {"ecs/task_arn": "task_arn", SIZE_CLASS_TAG: "size_class", "ecs/cpu": "cpu",
               "ecs/memory": "memory_mib", "ecs/ephemeral_storage": "ephemeral_storage_gib"}


def worker_of(tags: Mapping[str, str]) -> str | None:
    """The worker a run got (its ECS task and size), as compact JSON; None before it has a task."""
    if "ecs/task_arn" not in tags:
        return None
    return json.dumps({name: tags[tag] for tag, name in WORKER_TAGS.items() if tag in tags}, sort_keys=True)


def report_start(ledger: Ledger, job: Job, outcome: RunOutcome, task_states: Mapping[str, str] | None = None) -> None:
    """While a job's run waits for or starts its worker, say so in the job's progress (the build's
    own steps report once it runs), with ECS's state of its task (``task_states``: task ARN →
    lastStatus); and record the worker it got."""
    if outcome.worker and outcome.worker != job.worker:
        ledger.set_worker(job.job_id, job.attempt, outcome.worker)
    if outcome.status in (dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED):
        text = "waiting for a worker (the run is queued)"
    elif outcome.status == dg.DagsterRunStatus.STARTING:
        text = "starting a worker" + _worker_text(outcome.worker, task_states or {})
    else:
        return
    if text != job.progress:
        ledger.set_progress(job.job_id, job.attempt, text)


def _worker_text(worker: str | None, task_states: Mapping[str, str]) -> str:
    if not worker:
        return ""
    w = json.loads(worker)
    state = task_states.get(w["task_arn"])
    size = ", ".join(part for part in (
        w.get("size_class"),
        f"{int(w['cpu']) / 1024:g} vCPU" if "cpu" in w else None,
        f"{int(w['memory_mib']) / 1024:g} GiB" if "memory_mib" in w else None,
        f"{w['ephemeral_storage_gib']} GiB disk" if "ephemeral_storage_gib" in w else None,
    ) if part)
    task = w["task_arn"].rsplit("/", 1)[-1]
    return f": ECS task {task}" + (f" is {state}" if state else "") + (f" ({size})" if size else "")


MAX_RUNTIME = re.compile(r"Exceeded maximum runtime of (\d+) seconds")


def _max_runtime(instance: dg.DagsterInstance, run_id: str) -> str | None:
    """The sentence for a run that run monitoring stopped at its dagster/max_runtime, else None."""
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.RUN_FAILURE):
        found = MAX_RUNTIME.search(entry.message or "")
        if found:
            return (f"The build ran longer than its limit of {found[1]} s (set from the file's size) and "
                    "was stopped; an operator can rebuild it with a larger dagster/max_runtime.")
    return None


def _launch_failure(instance: dg.DagsterInstance, run_id: str) -> str:
    """The sentence for a run whose worker never started, from the launcher's error (the engine
    event the run queue records when a launch raises: e.g. ECS's "Capacity is unavailable"), else
    from the run's failure (run monitoring's start timeout)."""
    cause = None
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
        error = entry.dagster_event.engine_event_data.error if entry.dagster_event else None
        if error is not None:
            while error.cause is not None:
                error = error.cause
            head, sep, rest = error.message.strip().partition(": ")
            cause = rest if sep and head.endswith(error.cls_name) else error.message.strip()
    if cause is None:  # run monitoring gave up on a start (START_TIMEOUT): its message says so
        failures = instance.all_logs(run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
        cause = failures[-1].message if failures and failures[-1].message else None
    detail = f": {scrub(' '.join(cause.split()))[:300]}" if cause else ""
    return f"No worker could be started{detail.rstrip('.')}."


def _failure(instance: dg.DagsterInstance, run_id: str) -> tuple[str, bool, str | None]:
    """(sentence, permanent, the failed step's error class or None) from a failed run's events:
    the step's Failure says the first two (cfdb_assets.assets); an unexpected error gives its
    innermost cause, paths scrubbed; no step failure, the run failure's message."""
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE):
        data = entry.dagster_event.step_failure_data
        failure = data.user_failure_data
        if failure is not None and failure.description:
            flag = failure.metadata.get(PERMANENT_KEY)
            return scrub(failure.description), bool(flag and flag.value), "Failure"
        error = data.error
        while error is not None and error.cause is not None and error.cls_name.startswith("Dagster"):
            error = error.cause
        if error is not None:
            # SerializableErrorInfo.message starts with the dotted class path; keep the bare name.
            message = error.message.strip()
            head, sep, rest = message.partition(": ")
            if sep and head.endswith(error.cls_name):
                message = rest
            return scrub(f"{error.cls_name}: {message}"), False, error.cls_name
    failures = instance.all_logs(run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
    message = failures[-1].message if failures and failures[-1].message else "The run failed."
    return scrub(message), False, None
