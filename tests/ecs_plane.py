"""A local ECS plane for tests: moto's ECS (in this process, the ``moto_server`` fixture) receives
the real EcsRunLauncher's RegisterTaskDefinition / RunTask / DescribeTasks / StopTask, and a task
runner here runs each task as Fargate would: the container's command and environment from the task
definition plus the RunTask overrides, as a container of the image (``image``: podman, host
network, the task's environment only) or, for the fast tests, as a local process. When it exits the
task is STOPPED with its exit code, as ECS reports it, so the launcher's run-worker health check sees
a killed worker as failed.

moto stands in for ECS because no ECS can run here; its gaps, filled here and only here:
- moto never runs a task, and reports exit code 0 for every container: the runner runs them and
  writes the real exit code into moto's task;
- a Fargate task reads its own identity from the ECS metadata endpoint (``use_current_ecs_task_config``
  of deploy/dagster.yaml): ``metadata_env()`` serves one for the daemon's task;
- moto gives a task an ENI only in a VPC with DNS host names on (else RunTask raises);
- moto never runs out of capacity: ``without_capacity()`` makes RunTask answer as ECS does then.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
import traceback
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import boto3

ACCOUNT, REGION = "123456789012", "us-east-1"  # moto's default account
CAPACITY_UNAVAILABLE = "Capacity is unavailable at this time. Please try again later or in a different availability zone"


@dataclass
class TaskRecord:
    """One task the plane ran: what RunTask asked for, and how it ended."""

    arn: str
    family: str
    command: list[str]
    env: dict[str, str]
    cpu: str | None
    memory: str | None
    ephemeral_storage_gib: int | None
    tags: dict[str, str]
    process: subprocess.Popen | None = None
    exit_code: int | None = None
    log: Path | None = None
    container: str | None = None  # the podman container's name (podman mode)
    stopping: bool = False


@dataclass
class EcsPlane:
    """moto's ECS with a cluster, a network, a daemon task with a metadata endpoint, and a runner."""

    endpoint: str
    workdir: Path
    base_env: dict[str, str] = field(default_factory=dict)  # under every task's own environment
    cwd: Path | None = None  # where task processes start (the image's WORKDIR); default workdir
    # Run each task as a container of this image (podman, host network, the task's environment
    # only, as Fargate runs it); None: as a local process under base_env.
    image: str | None = None
    cluster: str = field(default_factory=lambda: f"cfdb-{uuid.uuid4().hex[:8]}")  # one per plane: moto is shared
    tasks: dict[str, TaskRecord] = field(default_factory=dict)

    def start(self) -> EcsPlane:
        ec2 = self._client("ec2")
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
        self.subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
        self.security_group = ec2.create_security_group(
            GroupName=f"workers-{vpc}", Description="run workers", VpcId=vpc)["GroupId"]
        ecs = self._client("ecs")
        ecs.create_cluster(clusterName=self.cluster)
        self.register("cfdb-daemon", "daemon", environment={})
        daemon = ecs.run_task(
            cluster=self.cluster, taskDefinition="cfdb-daemon", launchType="FARGATE",
            networkConfiguration={"awsvpcConfiguration": {
                "subnets": [self.subnet], "securityGroups": [self.security_group], "assignPublicIp": "DISABLED"}},
        )["tasks"][0]
        self.daemon_task = daemon["taskArn"]
        self._serve_metadata()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ecs-plane", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._metadata.shutdown()
        for record in self.tasks.values():
            if record.process and record.process.poll() is None:
                if record.container:  # the container outlives its podman client: remove it
                    _podman("rm", "--force", record.container)
                os.killpg(record.process.pid, signal.SIGKILL)

    def register(self, family: str, container: str, environment: dict[str, str]) -> str:
        """A Fargate task definition with one container (moto needs the container's memory)."""
        return self._client("ecs").register_task_definition(
            family=family, requiresCompatibilities=["FARGATE"], networkMode="awsvpc", cpu="1024", memory="4096",
            containerDefinitions=[{
                "name": container, "image": "cfdb-assets:test", "memory": 4096, "essential": True,
                "environment": [{"name": k, "value": v} for k, v in environment.items()],
            }],
        )["taskDefinition"]["taskDefinitionArn"]

    def metadata_env(self) -> dict[str, str]:
        """What ECS gives the daemon's container: its metadata endpoint."""
        return {"ECS_CONTAINER_METADATA_URI_V4": self.metadata_url}

    def kill(self, arn: str, sig: int = signal.SIGKILL) -> None:
        """The container dies (out of memory, a Spot interruption, an operator)."""
        record = self.tasks[arn]
        if record.container:
            _podman("kill", "--signal", signal.Signals(sig).name, record.container)
        else:
            os.killpg(record.process.pid, sig)

    @contextlib.contextmanager
    def without_capacity(self, reason: str = CAPACITY_UNAVAILABLE) -> Iterator[list[str]]:
        """While inside, every RunTask on this cluster answers as ECS does when Fargate has no
        capacity: no task, one failure. Yields the refused calls' task definitions."""
        from moto.ecs.responses import EC2ContainerServiceResponse

        refused: list[str] = []
        original = EC2ContainerServiceResponse.run_task
        cluster = self.cluster

        def run_task(response):
            if response._get_param("cluster") not in (cluster, f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/{cluster}"):
                return original(response)
            refused.append(response._get_param("taskDefinition"))
            return json.dumps({"tasks": [], "failures": [{"reason": reason}]})

        EC2ContainerServiceResponse.run_task = run_task
        try:
            yield refused
        finally:
            EC2ContainerServiceResponse.run_task = original

    def wait_for_tasks(self, count: int, timeout: float = 60) -> list[TaskRecord]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.tasks) >= count:
                return list(self.tasks.values())
            time.sleep(0.2)
        raise AssertionError(f"{len(self.tasks)} of {count} tasks were started within {timeout} s")

    def wait_stopped(self, arn: str, timeout: float = 30) -> dict:
        """The task as DescribeTasks shows it once its process exited. (moto marks a task STOPPED
        the moment StopTask is called, before the runner has stopped the process and written the
        exit code; ECS would show it stopping until the container exits.)"""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            record = self.tasks.get(arn)
            if record and record.exit_code is not None:
                return self._client("ecs").describe_tasks(cluster=self.cluster, tasks=[arn])["tasks"][0]
            time.sleep(0.1)
        raise AssertionError(f"task {arn} still running after {timeout} s")

    # --- the runner --------------------------------------------------------------------------

    def _backend(self):
        from moto.ecs.models import ecs_backends

        return ecs_backends[ACCOUNT][REGION]

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._step()
            except Exception:  # noqa: BLE001 - the plane must outlive one bad step, and say why
                traceback.print_exc()
            time.sleep(0.2)

    def _step(self) -> None:
        for arn, task in list(self._backend().tasks.get(self.cluster, {}).items()):
            if arn == self.daemon_task:
                continue
            record = self.tasks.get(arn)
            if record is None and task.desired_status == "RUNNING":
                self.tasks[arn] = record = self._launch(arn, task)
            if record is None or record.exit_code is not None:
                continue
            if task.desired_status == "STOPPED" and not record.stopping and record.process.poll() is None:
                record.stopping = True  # StopTask: ECS sends SIGTERM, then SIGKILL after a grace
                if record.container:
                    subprocess.Popen([*_PODMAN, "stop", "--time", "30", record.container], env=_podman_env(),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                else:
                    os.killpg(record.process.pid, signal.SIGTERM)
            code = record.process.poll()
            if code is not None:
                record.exit_code = 128 - code if code < 0 else code  # as a container reports a signal
                task.containers[0].exitCode = record.exit_code
                task.containers[0].last_status = "STOPPED"
                task.last_status = "STOPPED"
                task.desired_status = "STOPPED"
                task.stopped_reason = task.stopped_reason or "Essential container in task exited"

    def _launch(self, arn: str, task) -> TaskRecord:
        definition = self._backend().describe_task_definition(task.task_definition_arn)
        container = definition.container_definitions[0]
        overrides = task.overrides or {}
        mine = next((o for o in overrides.get("containerOverrides", []) if o.get("name") == container["name"]), {})
        env = {e["name"]: e["value"] for e in container.get("environment") or []}
        env.update({e["name"]: e["value"] for e in mine.get("environment") or []})
        command = mine.get("command") or container.get("command") or []
        record = TaskRecord(
            arn=arn,
            family=definition.family,
            command=command,
            env=env,
            cpu=overrides.get("cpu"),
            memory=overrides.get("memory"),
            ephemeral_storage_gib=(overrides.get("ephemeralStorage") or {}).get("sizeInGiB"),
            tags={t["key"]: t["value"] for t in task.tags or []},
            log=self.workdir / f"task-{arn.rsplit('/', 1)[-1]}.log",
        )
        task.last_status = "RUNNING"
        if self.image:
            record.container = f"cfdb-task-{arn.rsplit('/', 1)[-1]}"
            argv = [*_PODMAN, "run", "--rm", "--name", record.container, "--network", "host",
                    *(f"--env={k}={v}" for k, v in env.items()), self.image, *command]
            run_env, cwd = _podman_env(), self.workdir
        else:
            argv, run_env, cwd = command, {**self.base_env, **env}, self.cwd or self.workdir
        with open(record.log, "wb") as log:
            record.process = subprocess.Popen(argv, env=run_env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
                                              start_new_session=True)
        return record

    # --- the metadata endpoint -----------------------------------------------------------------

    def _serve_metadata(self) -> None:
        body = json.dumps({"Cluster": self.cluster, "TaskARN": self.daemon_task}).encode()

        class Metadata(BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body if self.path.rstrip("/").endswith("/task") else b'{"Name": "daemon"}')

            def log_message(self, *args):
                pass

        self._metadata = ThreadingHTTPServer(("127.0.0.1", 0), Metadata)
        threading.Thread(target=self._metadata.serve_forever, daemon=True).start()
        self.metadata_url = f"http://127.0.0.1:{self._metadata.server_address[1]}/v4/daemon"

    def _client(self, service: str):
        return boto3.client(service, endpoint_url=self.endpoint, region_name=REGION,
                            aws_access_key_id="testing", aws_secret_access_key="testing")


_PODMAN = ["podman"]


def _podman_env() -> dict[str, str]:
    from tests.deploy.image import CONTAINERS_CONF  # runc and the rlimits this host allows

    return {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)}


def _podman(*args: str) -> None:
    subprocess.run([*_PODMAN, *args], env=_podman_env(), capture_output=True, timeout=60, check=False)
