"""Sensors: the on-demand sensor turns queued ledger jobs into runs; run-status sensors write the
outcome back. Both are thin: one ledger query per tick, no fetching, no tools.
"""


import json
import time

import dagster as dg

from cfdb_assets.assets import FamilyDefs
from cfdb_assets.names import CACHE_KEY_TAG, DCC_TAG, JOB_ID_TAG, PERMANENT_KEY, family_name
from cfdb_assets.tools import scrub
from resources import Ledger

__all__ = ["build_on_demand_sensor", "build_run_status_sensors", "error_text"]

BATCH = 500
ORPHAN_BATCH = 100
ORPHAN_GRACE_S = 60
FINISHED = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}


def build_on_demand_sensor(
    families: list[FamilyDefs], minimum_interval_seconds: int = 2, orphan_grace_s: float = ORPHAN_GRACE_S
) -> dg.SensorDefinition:
    """One sensor for every family job: reads queued jobs, adds partitions, requests runs.

    The cursor holds the ids of queued jobs already requested, so each is requested once while the
    run waits in Dagster's queue; ``run_key=job_id`` makes a re-request after a failed tick harmless,
    and a retried file gets a new job id, hence a new run."""
    by_name = {family.spec.name: family for family in families}
    jobs = [job for family in families for job in family.definitions.jobs or []]

    @dg.sensor(
        name="on_demand",
        jobs=jobs,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Turns cache misses recorded in the request ledger into partitioned runs.",
    )
    def on_demand(context: dg.SensorEvaluationContext, ledger: Ledger):
        _finish_orphans(context.instance, ledger, orphan_grace_s)
        queued = ledger.queued(limit=BATCH)
        seen = set(json.loads(context.cursor)) if context.cursor else set()
        new = [(job, src) for job, src in queued if job.job_id not in seen]
        if not new:
            return dg.SensorResult(skip_reason="No new requests.", cursor=_cursor(queued))
        partitions: dict[str, list[str]] = {}
        run_requests = []
        for job, src in new:
            name = family_name(src.dcc, src.family)
            if name not in by_name:
                # The API and this code location disagree on CFDB_DCCS: fail the job, visibly.
                ledger.finish(job.job_id, succeeded=False, error=(
                    f"This server has no pipeline for DCC {src.dcc!r} ({src.family}); "
                    "CFDB_DCCS differs between the API and Dagster."))
                continue
            partitions.setdefault(name, []).append(job.cache_key)
            run_requests.append(
                dg.RunRequest(
                    job_name=name,
                    partition_key=job.cache_key,
                    run_key=job.job_id,
                    tags={JOB_ID_TAG: job.job_id, CACHE_KEY_TAG: job.cache_key, DCC_TAG: src.dcc},
                )
            )
        return dg.SensorResult(
            run_requests=run_requests,
            dynamic_partitions_requests=[
                by_name[name].partitions.build_add_request(sorted(set(keys))) for name, keys in partitions.items()
            ],
            cursor=_cursor(queued),
        )

    return on_demand


def _cursor(queued: list) -> str:
    return json.dumps(sorted(job.job_id for job, _ in queued))


def _finish_orphans(instance: dg.DagsterInstance, ledger: Ledger, grace_s: float) -> None:
    """Jobs still 'running' whose run ended over a minute ago: the run-status sensor missed them (a
    ledger outage during its tick moves its cursor anyway). Finish them from the run's status."""
    for job in ledger.running(limit=ORPHAN_BATCH):
        record = instance.get_run_record_by_id(job.run_id) if job.run_id else None
        if record is None or record.dagster_run.status not in FINISHED:
            continue
        if record.end_time is None or time.time() - record.end_time < grace_s:
            continue  # the run-status sensors write the precise outcome first
        if record.dagster_run.status == dg.DagsterRunStatus.SUCCESS:
            ledger.finish(job.job_id, succeeded=True)
        else:
            ledger.finish(job.job_id, succeeded=False, error=(
                f"The run {job.run_id} ended {record.dagster_run.status.value.lower()}; "
                "its details are in the Dagster UI."))


def error_text(context: dg.RunFailureSensorContext) -> tuple[str, bool]:
    """The user-facing error of a failed run and whether it is permanent: the step's Failure says
    both (``cfdb_assets.assets``); an unexpected error gives its innermost cause, paths scrubbed."""
    for event in context.get_step_failure_events():
        failure = event.step_failure_data.user_failure_data
        if failure is not None and failure.description:
            permanent = failure.metadata.get(PERMANENT_KEY)
            return scrub(failure.description), bool(permanent and permanent.value)
        error = event.step_failure_data.error
        while error is not None and error.cause is not None and error.cls_name.startswith("Dagster"):
            error = error.cause
        if error is not None:
            # SerializableErrorInfo.message starts with the dotted class path; keep the bare name.
            message = error.message.strip()
            head, sep, rest = message.partition(": ")
            if sep and head.endswith(error.cls_name):
                message = rest
            return scrub(f"{error.cls_name}: {message}"), False
    message = context.failure_event.message or "The run failed."
    return scrub(message), False


def build_run_status_sensors(minimum_interval_seconds: int = 2) -> list:
    """Sensors writing terminal job states (succeeded / failed + error) back to the ledger."""
    common = {"minimum_interval_seconds": minimum_interval_seconds, "default_status": dg.DefaultSensorStatus.RUNNING}

    @dg.run_status_sensor(name="jobs_succeeded", run_status=dg.DagsterRunStatus.SUCCESS, **common)
    def jobs_succeeded(context: dg.RunStatusSensorContext, ledger: Ledger):
        if job_id := context.dagster_run.tags.get(JOB_ID_TAG):
            ledger.finish(job_id, succeeded=True)

    @dg.run_failure_sensor(name="jobs_failed", **common)
    def jobs_failed(context: dg.RunFailureSensorContext, ledger: Ledger):
        if job_id := context.dagster_run.tags.get(JOB_ID_TAG):
            message, permanent = error_text(context)
            ledger.finish(job_id, succeeded=False, error=message, permanent=permanent)

    @dg.run_status_sensor(name="jobs_canceled", run_status=dg.DagsterRunStatus.CANCELED, **common)
    def jobs_canceled(context: dg.RunStatusSensorContext, ledger: Ledger):
        if job_id := context.dagster_run.tags.get(JOB_ID_TAG):
            ledger.finish(job_id, succeeded=False, error="The run was canceled.")

    return [jobs_succeeded, jobs_failed, jobs_canceled]
