"""The reconciler: the decision table, and a real instance's failed runs settled into the ledger."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import re
import sys

import boto3

import dagster as dg
from dagster._core.events import EngineEventData  # what the run queue records (no public name)
from dagster._utils.error import serializable_error_info_from_exc_info
import pytest

from cfdb_assets.definitions import build_definitions
from cfdb_assets.names import ATTEMPT_TAG, JOB_ID_TAG
from cfdb_assets.reconcile import Action, RunOutcome, decide
from resources import Job, JobState, Ledger
from tests.helpers import files_for

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
S = dg.DagsterRunStatus


def job(state: JobState, attempt: int = 1, requested_s_ago: float | None = None, run_id: str | None = None) -> Job:
    requested = NOW - timedelta(seconds=requested_s_ago) if requested_s_ago is not None else None
    return Job("j", "k" * 32, state, run_id, (), None, None, NOW, NOW, None, attempt, requested)


DECISIONS = [
    # (job, outcome, action)
    (job(JobState.REQUESTED, requested_s_ago=5), RunOutcome(None), Action.WAIT),
    (job(JobState.REQUESTED, requested_s_ago=500), RunOutcome(None), Action.REQUEST_AGAIN),
    (job(JobState.RUNNING, run_id="r"), RunOutcome(None), Action.FAIL),  # its run was deleted from Dagster
    (job(JobState.REQUESTED), RunOutcome(S.QUEUED, "r"), Action.WAIT),
    (job(JobState.REQUESTED), RunOutcome(S.STARTED, "r"), Action.RUNNING),
    (job(JobState.RUNNING, run_id="r"), RunOutcome(S.STARTED, "r"), Action.WAIT),
    (job(JobState.RUNNING, run_id="r1"), RunOutcome(S.STARTED, "r2"), Action.RUNNING),  # a Dagster retry run
    (job(JobState.RUNNING), RunOutcome(S.SUCCESS, "r"), Action.SUCCEED),
    (job(JobState.RUNNING), RunOutcome(S.FAILURE, "r", will_retry=True), Action.WAIT),
    (job(JobState.RUNNING), RunOutcome(S.FAILURE, "r", error="x", lost_worker=True), Action.RETRY),
    (job(JobState.RUNNING, attempt=3), RunOutcome(S.FAILURE, "r", lost_worker=True), Action.FAIL),
    (job(JobState.RUNNING), RunOutcome(S.FAILURE, "r", error="ChecksumMismatch: ...", permanent=True), Action.FAIL),
    (job(JobState.RUNNING), RunOutcome(S.CANCELED, "r"), Action.FAIL),
]


@pytest.mark.parametrize(("job_", "outcome", "action"), DECISIONS)
def test_decide(job_, outcome, action):
    assert decide(job_, outcome, NOW, max_attempts=3, request_grace_s=120) == action


def _requested_job(settings, instance) -> tuple[Ledger, Job, dg.DagsterRun]:
    """A requested job and a run of its attempt, created in the instance as the daemon would."""
    files = files_for(settings)
    record = files.lookup("encode", "ENCFF000BED")
    plan = files.plan(record)
    ledger_job, _ = files.request(record, plan)
    files.ledger.mark_requested([ledger_job.job_id])
    job_def = build_definitions(settings).resolve_job_def("encode_intervals")
    instance.add_dynamic_partitions("encode_intervals", [plan.cache_key])
    run = instance.create_run_for_job(
        job_def, tags={JOB_ID_TAG: ledger_job.job_id, ATTEMPT_TAG: "1", "dagster/partition": plan.cache_key}
    )
    return files.ledger, files.ledger.job(ledger_job.job_id), run


def _worker_lost(instance, run) -> None:
    """What run monitoring writes for a worker that started and died: no step failed."""
    instance.handle_run_event(run.run_id, dg.DagsterEvent(
        event_type_value=dg.DagsterEventType.RUN_START.value, job_name=run.job_name))
    instance.report_run_failed(run)


def _tick(settings, instance, ledger):
    sensor = build_definitions(settings).get_sensor_def("on_demand")
    return sensor(dg.build_sensor_context(instance=instance, resources={"ledger": ledger}))


def test_a_lost_worker_is_retried_as_the_next_attempt_of_the_same_job(settings):
    with dg.instance_for_test() as instance:
        ledger, requested, run = _requested_job(settings, instance)
        _worker_lost(instance, run)

        result = _tick(settings, instance, ledger)

        retried = ledger.job(requested.job_id)
        assert (retried.state, retried.attempt) == ("requested", 2)  # requeued, then requested again
        assert retried.error == "The worker stopped before the build finished; the build will be retried."
        assert [r.run_key for r in result.run_requests] == [f"{requested.job_id}:2"]
        assert result.run_requests[0].tags[ATTEMPT_TAG] == "2"


def test_a_run_dagster_will_retry_is_waited_for(settings):
    with dg.instance_for_test() as instance:
        ledger, requested, run = _requested_job(settings, instance)
        _worker_lost(instance, run)
        instance.add_run_tags(run.run_id, {"dagster/will_retry": "true"})

        _tick(settings, instance, ledger)

        assert (ledger.job(requested.job_id).state, ledger.job(requested.job_id).attempt) == ("requested", 1)


def test_the_last_attempt_fails_the_job_with_the_lost_worker_sentence(settings):
    with dg.instance_for_test() as instance:
        ledger, requested, run = _requested_job(settings, instance)
        for attempt in (1, 2):  # two lost attempts...
            ledger.requeue(requested.job_id, attempt, error="lost")
        ledger.mark_requested([requested.job_id])
        third = instance.create_run_for_job(
            build_definitions(settings).resolve_job_def("encode_intervals"),
            tags={JOB_ID_TAG: requested.job_id, ATTEMPT_TAG: "3", "dagster/partition": run.tags["dagster/partition"]},
        )
        _worker_lost(instance, third)  # ... and the third

        _tick(settings, instance, ledger)

        failed = ledger.job(requested.job_id)
        assert (failed.state, failed.error_kind) == ("failed", "transient")
        assert failed.error == "The worker stopped before the build finished, 3 times; request the file again later."


def test_a_requested_run_that_never_appeared_is_asked_for_again(settings):
    from cfdb_assets.sensors import Policy, build_on_demand_sensor
    from cfdb_assets.definitions import build_families

    files = files_for(settings)
    record = files.lookup("encode", "ENCFF000BED")
    job_, _ = files.request(record, files.plan(record))
    files.ledger.mark_requested([job_.job_id])  # the tick marked it; the daemon then never created the run
    sensor = build_on_demand_sensor(build_families(settings), policy=Policy(request_grace_s=0))
    with dg.instance_for_test() as instance:
        result = sensor(dg.build_sensor_context(instance=instance, resources={"ledger": files.ledger}))

    assert [r.run_key for r in result.run_requests] == [f"{job_.job_id}:1"]  # the same attempt, requested again


def test_the_sensor_keeps_at_most_a_window_of_runs_asked_for_but_not_started(settings):
    from cfdb_assets.definitions import build_families
    from cfdb_assets.sensors import Policy, build_on_demand_sensor

    files = files_for(settings)
    jobs = [files.request(r, files.plan(r))[0]
            for r in (files.lookup("encode", "ENCFF000BED"), files.lookup("encode", "ENCFF000SAM"),
                      files.lookup("encode", "ENCFF000NPK"))]
    sensor = build_on_demand_sensor(build_families(settings), policy=Policy(run_window=2))
    with dg.instance_for_test() as instance:
        def tick():
            return sensor(dg.build_sensor_context(instance=instance, resources={"ledger": files.ledger}))

        first = tick()
        assert [r.run_key for r in first.run_requests] == [f"{j.job_id}:1" for j in jobs[:2]]  # oldest first
        assert not tick().run_requests  # the window is full: the third waits in the ledger
        files.ledger.mark_running(jobs[0].job_id, "run-1")  # one run started: room for one more
        assert [r.run_key for r in tick().run_requests] == [f"{jobs[2].job_id}:1"]


def test_a_tick_that_finds_no_request_listens_for_one_and_asks_for_its_run_at_once(settings):
    """Dagster evaluates sensors every 5 s at best: a tick that finds the ledger empty waits for the
    first request instead (Policy.listen_s), so a miss does not wait for the next tick."""
    import threading
    import time

    from cfdb_assets.definitions import build_families
    from cfdb_assets.sensors import Policy, build_on_demand_sensor

    files = files_for(settings)
    record = files.lookup("encode", "ENCFF000BED")
    sensor = build_on_demand_sensor(build_families(settings), policy=Policy(listen_s=60))
    requested = []
    timer = threading.Timer(0.5, lambda: requested.append(files.request(record, files.plan(record))[0]))
    with dg.instance_for_test() as instance:
        started = time.monotonic()
        timer.start()
        result = sensor(dg.build_sensor_context(instance=instance, resources={"ledger": files.ledger}))
        waited = time.monotonic() - started

    assert [r.run_key for r in result.run_requests] == [f"{requested[0].job_id}:1"]
    assert waited < 30  # it answered the request, not the end of its 60 s window
    assert files.ledger.job(requested[0].job_id).state == "requested"


def test_a_listening_tick_without_requests_ends_with_its_window_and_a_full_window_does_not_listen(settings):
    import time

    from cfdb_assets.definitions import build_families
    from cfdb_assets.sensors import Policy, build_on_demand_sensor

    files = files_for(settings)
    families = build_families(settings)
    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(instance=instance, resources={"ledger": files.ledger})
        started = time.monotonic()
        quiet = build_on_demand_sensor(families, policy=Policy(listen_s=0.6))(context)
        assert time.monotonic() - started >= 0.6 and not quiet.run_requests

        record = files.lookup("encode", "ENCFF000BED")
        job_, _ = files.request(record, files.plan(record))
        files.ledger.mark_requested([job_.job_id])  # one run asked for and not started: the window of 1 is full
        started = time.monotonic()
        full = build_on_demand_sensor(families, policy=Policy(listen_s=60, run_window=1))(
            dg.build_sensor_context(instance=instance, resources={"ledger": files.ledger}))
        assert time.monotonic() - started < 30 and not full.run_requests  # nothing could be asked for: no wait


def test_a_tick_past_its_time_budget_still_requests_one_run(settings, monkeypatch):
    # A slow ledger can spend the whole budget on reconciling: the tick still makes progress.
    from cfdb_assets import sensors
    from cfdb_assets.definitions import build_families

    monkeypatch.setattr(sensors, "TICK_BUDGET_S", -1.0)  # the deadline has passed before the first job
    files = files_for(settings)
    jobs = [files.request(r, files.plan(r))[0]
            for r in (files.lookup("encode", "ENCFF000BED"), files.lookup("encode", "ENCFF000SAM"))]
    sensor = sensors.build_on_demand_sensor(build_families(settings))
    with dg.instance_for_test() as instance:
        result = sensor(dg.build_sensor_context(instance=instance, resources={"ledger": files.ledger}))

    assert [r.run_key for r in result.run_requests] == [f"{jobs[0].job_id}:1"]
    assert [files.ledger.job(j.job_id).state for j in jobs] == ["requested", "queued"]


def test_a_run_waiting_for_its_worker_says_so_and_names_the_task_it_got(settings):
    with dg.instance_for_test() as instance:
        ledger, requested, run = _requested_job(settings, instance)
        _tick(settings, instance, ledger)  # the run exists, not started: in the coordinator's queue
        assert ledger.job(requested.job_id).progress == "waiting for a worker (the run is queued)"

        # The EcsRunLauncher started a task: the run is STARTING, with its task and size in its tags.
        instance.add_run_tags(run.run_id, {
            "ecs/task_arn": "arn:aws:ecs:us-east-1:123456789012:task/cfdb/0a1b2c3d", "ecs/cpu": "1024",
            "ecs/memory": "4096", "ecs/ephemeral_storage": "21", "cfdb/size_class": "small"})
        instance.handle_run_event(run.run_id, dg.DagsterEvent(
            event_type_value=dg.DagsterEventType.RUN_STARTING.value, job_name=run.job_name))
        _tick(settings, instance, ledger)

        job = ledger.job(requested.job_id)
        assert job.progress == "starting a worker: ECS task 0a1b2c3d (small, 1 vCPU, 4 GiB, 21 GiB disk)"
        assert files_for(settings).job_view(job)["worker"] == {
            "task_arn": "arn:aws:ecs:us-east-1:123456789012:task/cfdb/0a1b2c3d", "cpu": "1024",
            "memory_mib": "4096", "ephemeral_storage_gib": "21", "size_class": "small"}


def test_a_run_whose_worker_never_started_says_why_and_is_retried(settings):
    with dg.instance_for_test() as instance:
        ledger, requested, run = _requested_job(settings, instance)
        # What the run queue records when the launcher raises (here: ECS had no Fargate capacity).
        try:
            raise RuntimeError("Task failed. Failure reason: Capacity is unavailable at this time.")
        except RuntimeError:
            error = serializable_error_info_from_exc_info(sys.exc_info())
        instance.report_engine_event("Caught an unrecoverable error while dequeuing the run.", run,
                                     EngineEventData.engine_error(error))
        instance.report_run_failed(run)

        _tick(settings, instance, ledger)

        retried = ledger.job(requested.job_id)
        assert (retried.state, retried.attempt) == ("requested", 2)
        assert retried.error == ("No worker could be started: Task failed. Failure reason: Capacity is "
                                 "unavailable at this time. The build will be retried.")


def test_a_run_stopped_at_its_max_runtime_fails_its_job_with_that_sentence_and_is_remembered(settings):
    with dg.instance_for_test() as instance:
        ledger, requested, run = _requested_job(settings, instance)
        instance.handle_run_event(run.run_id, dg.DagsterEvent(
            event_type_value=dg.DagsterEventType.RUN_START.value, job_name=run.job_name))
        instance.report_run_failed(run, "Exceeded maximum runtime of 1800 seconds.")  # run monitoring

        result = _tick(settings, instance, ledger)

        failed = ledger.job(requested.job_id)
        assert (failed.state, failed.error_kind, failed.attempt) == ("failed", "permanent", 1)
        assert failed.error.startswith("The build ran longer than its limit of 1800 s")
        assert not result.run_requests  # not retried as a new attempt


def test_a_starting_run_reports_what_ecs_says_of_its_task(settings, moto_server, monkeypatch):
    # moto's ECS, over HTTP: the task exists and ECS reports its lastStatus (moto: no Fargate here).
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": moto_server}.items():
        monkeypatch.setenv(name, value)
    ec2, ecs = boto3.client("ec2"), boto3.client("ecs")
    vpc = ec2.create_vpc(CidrBlock="10.1.0.0/16")["Vpc"]["VpcId"]
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})  # moto needs it for an ENI
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.1.1.0/24")["Subnet"]["SubnetId"]
    ecs.create_cluster(clusterName="starting")
    ecs.register_task_definition(family="starting-run", requiresCompatibilities=["FARGATE"], networkMode="awsvpc",
                                 cpu="1024", memory="4096",
                                 containerDefinitions=[{"name": "run", "image": "cfdb-assets", "memory": 4096}])
    task = ecs.run_task(cluster="starting", taskDefinition="starting-run", launchType="FARGATE",
                        networkConfiguration={"awsvpcConfiguration": {"subnets": [subnet], "securityGroups": []}},
                        )["tasks"][0]

    with dg.instance_for_test() as instance:
        ledger, requested, run = _requested_job(settings, instance)
        instance.add_run_tags(run.run_id, {"ecs/task_arn": task["taskArn"], "ecs/cluster": task["clusterArn"],
                                           "cfdb/size_class": "small"})
        instance.handle_run_event(run.run_id, dg.DagsterEvent(
            event_type_value=dg.DagsterEventType.RUN_STARTING.value, job_name=run.job_name))
        _tick(settings, instance, ledger)

    # moto moves a task through ECS's lifecycle as it is described, so any of its states may come back.
    task_id = task["taskArn"].rsplit("/", 1)[-1]
    states = "PROVISIONING|PENDING|ACTIVATING|RUNNING|DEACTIVATING|STOPPING|DEPROVISIONING|STOPPED"
    assert re.fullmatch(rf"starting a worker: ECS task {task_id} is ({states}) \(small\)",
                        ledger.job(requested.job_id).progress), ledger.job(requested.job_id).progress
