"""The local ECS plane (tests/ecs_plane.py) against the real EcsRunLauncher's view of a task: a task
RunTask starts runs here, its exit code reaches moto, and the launcher's run-worker health check
tells a finished worker from a killed one, as it does on Fargate."""

from __future__ import annotations

import signal

import boto3
import dagster as dg
import pytest
from dagster._core.launcher import WorkerStatus  # the health check's result type; no public name

from tests.ecs_plane import EcsPlane


@pytest.fixture
def plane(moto_server, tmp_path, monkeypatch):
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": moto_server}.items():
        monkeypatch.setenv(name, value)
    plane = EcsPlane(moto_server, tmp_path, base_env={"PATH": "/usr/bin:/bin"}).start()
    yield plane
    plane.close()


def _run_task(plane: EcsPlane, command: list[str], **overrides) -> str:
    plane.register("worker", "run", environment={"GREETING": "from the task definition"})
    return boto3.client("ecs").run_task(
        cluster=plane.cluster, taskDefinition="worker", launchType="FARGATE",
        networkConfiguration={"awsvpcConfiguration": {
            "subnets": [plane.subnet], "securityGroups": [plane.security_group], "assignPublicIp": "DISABLED"}},
        overrides={"containerOverrides": [{"name": "run", "command": command,
                                           "environment": [{"name": "EXTRA", "value": "from RunTask"}]}], **overrides},
        tags=[{"key": "cfdb/size_class", "value": "medium"}],
    )["tasks"][0]["taskArn"]


def _health(arn: str, cluster: str):
    """The EcsRunLauncher's verdict on a run whose worker is this task (no ECS network lookups:
    use_current_ecs_task_config is off here, the daemon's own task is the e2e test's business)."""
    overrides = {"run_launcher": {"module": "dagster_aws.ecs", "class": "EcsRunLauncher", "config": {
        "task_definition": "worker", "container_name": "run", "use_current_ecs_task_config": False}}}
    with dg.instance_for_test(overrides=overrides) as instance:
        run = instance.create_run_for_job(dg.JobDefinition(graph_def=dg.GraphDefinition(name="g"), name="j"))
        instance.add_run_tags(run.run_id, {"ecs/task_arn": arn, "ecs/cluster": cluster})
        return instance.run_launcher.check_run_worker_health(instance.get_run_by_id(run.run_id))


def test_a_task_runs_its_command_with_the_definition_and_override_environment(plane):
    arn = _run_task(plane, ["sh", "-c", 'echo "$GREETING / $EXTRA"'], cpu="2048", memory="8192",
                    ephemeralStorage={"sizeInGiB": 40})

    task = plane.wait_stopped(arn)
    record = plane.tasks[arn]
    assert record.log.read_text() == "from the task definition / from RunTask\n"
    assert (record.cpu, record.memory, record.ephemeral_storage_gib) == ("2048", "8192", 40)
    assert record.tags == {"cfdb/size_class": "medium"}
    assert task["containers"][0]["exitCode"] == 0
    assert _health(arn, plane.cluster).status == WorkerStatus.SUCCESS


def test_a_killed_container_is_a_failed_worker_with_its_exit_code(plane):
    arn = _run_task(plane, ["sleep", "60"])
    plane.wait_for_tasks(1)
    assert _health(arn, plane.cluster).status == WorkerStatus.RUNNING

    plane.kill(arn, signal.SIGKILL)

    task = plane.wait_stopped(arn)
    assert task["containers"][0]["exitCode"] == 137
    assert _health(arn, plane.cluster).status == WorkerStatus.FAILED


def test_stop_task_stops_the_process_as_ecs_does(plane):
    arn = _run_task(plane, ["sleep", "60"])
    plane.wait_for_tasks(1)

    boto3.client("ecs").stop_task(cluster=plane.cluster, task=arn, reason="Run terminated by Dagster")

    task = plane.wait_stopped(arn)
    assert (task["containers"][0]["exitCode"], task["stoppedReason"]) == (143, "Run terminated by Dagster")
    assert plane.tasks[arn].process.poll() is not None


def test_without_capacity_run_task_answers_as_ecs_does(plane):
    with plane.without_capacity() as refused:
        plane.register("worker", "run", environment={})
        answer = boto3.client("ecs").run_task(
            cluster=plane.cluster, taskDefinition="worker", launchType="FARGATE",
            networkConfiguration={"awsvpcConfiguration": {"subnets": [plane.subnet]}})
    assert answer["tasks"] == [] and answer["failures"][0]["reason"].startswith("Capacity is unavailable")
    assert refused == ["worker"]
    assert _run_task(plane, ["true"])  # capacity is back
