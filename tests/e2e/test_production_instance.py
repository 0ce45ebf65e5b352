"""End to end: the committed production instance, deploy/dagster.yaml itself, under the real
`dagster instance migrate`, `dagster-daemon run` and `dagster-webserver`: Postgres storage in a
throwaway database, the EcsRunLauncher against moto's ECS, S3 compute logs on moto's S3."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

import boto3
import httpx
import sqlalchemy as sa

from tests.e2e.production import DEPLOY_YAML, catalog_snapshot
from tests.e2e.service import ROOT, free_port

BIN = ROOT / ".venv" / "bin"
MAX_CONCURRENT_RUNS = 3  # anything but the default 10, to see the env var arrive
STARTUP_TIMEOUT_S = 120

STATUS_QUERY = """{
  version
  instance {
    runLauncher { name }
    runQueuingSupported
    runQueueConfig { maxConcurrentRuns tagConcurrencyLimitsYaml }
    daemonHealth { allDaemonStatuses { daemonType required healthy lastHeartbeatErrors { message } } }
  }
  workspaceOrError {
    __typename
    ... on Workspace {
      locationEntries {
        name
        loadStatus
        locationOrLoadError { __typename ... on PythonError { message } }
      }
    }
  }
  repositoriesOrError {
    __typename
    ... on RepositoryConnection { nodes { name location { name } jobs { name } } }
    ... on PythonError { message }
  }
}"""

# The daemons this instance must run: the queue, the sensors, run monitoring and run retries.
EXPECTED_DAEMONS = {"SENSOR", "QUEUED_RUN_COORDINATOR", "MONITORING", "EVENT_LOG_CONSUMER", "SCHEDULER"}


def _stop(procs: list[subprocess.Popen]) -> None:
    """SIGTERM to each process group (the daemon's code server included), SIGKILL to stragglers."""
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    for proc in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        with contextlib.suppress(ProcessLookupError):  # the group may outlive its leader
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _tail(path: Path, n: int = 3000) -> str:
    return path.read_text(errors="replace")[-n:] if path.exists() else "(no log)"


def _wait_ready(port: int, procs: dict[str, subprocess.Popen], diagnostics) -> tuple[dict, dict]:
    """Poll GraphQL until the webserver answers and every required daemon (the expected ones
    among them) reports healthy; returns the last status and /server_info."""
    status: dict = {}
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        while time.monotonic() < deadline:
            for name, proc in procs.items():
                assert proc.poll() is None, f"{name} exited early\n{diagnostics()}"
            try:
                response = client.post("/graphql", json={"query": STATUS_QUERY})
            except httpx.TransportError:  # not listening yet
                time.sleep(0.5)
                continue
            if response.status_code == 200 and "data" in response.json():
                status = response.json()["data"]
                daemons = status["instance"]["daemonHealth"]["allDaemonStatuses"]
                required = {d["daemonType"] for d in daemons if d["required"]}
                if required >= EXPECTED_DAEMONS and all(d["healthy"] for d in daemons if d["required"]):
                    return status, client.get("/server_info").json()
            time.sleep(1)
    raise AssertionError(f"not ready in {STARTUP_TIMEOUT_S} s; last status {status}\n{diagnostics()}")


def test_deploy_instance_runs_daemon_and_webserver_on_postgres_ecs_launcher_and_s3_logs(
    tmp_path, pg_database, aws, monkeypatch
):
    started = time.monotonic()
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").symlink_to(DEPLOY_YAML)  # the committed file itself, not a test variant
    data_dir, logs = tmp_path / "data", tmp_path / "logs"
    data_dir.mkdir()
    logs.mkdir()

    # What the instance reads, as the task definitions set it (the password may be empty: trust auth).
    instance_env = {
        **aws,
        "DAGSTER_HOME": str(home),
        "DAGSTER_PG_HOST": pg_database.host,
        "DAGSTER_PG_PORT": str(pg_database.port or 5432),
        "DAGSTER_PG_USER": pg_database.username,
        "DAGSTER_PG_PASSWORD": pg_database.password or "",
        "DAGSTER_PG_DB": pg_database.database,
        "CFDB_MAX_CONCURRENT_RUNS": str(MAX_CONCURRENT_RUNS),
    }
    # The project's own settings, as in production: the ledger in the same Postgres, the store on S3.
    project_env = {
        "CFDB_LEDGER_URL": pg_database.render_as_string(hide_password=False),
        "CFDB_CATALOG": catalog_snapshot(aws),
        "CFDB_DATA_DIR": str(data_dir),
    }
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("CFDB_", "DAGSTER_", "AWS_"))}
    env = {**inherited, **instance_env, **project_env}

    # Create the instance's tables once, as the one-off migrate task does before a deploy.
    migrate = subprocess.run(
        [str(BIN / "dagster"), "instance", "migrate"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=180,
    )
    assert migrate.returncode == 0, migrate.stdout[-2000:] + migrate.stderr[-3000:]
    migrated = time.monotonic() - started

    port = free_port()
    commands = {
        "daemon": [str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"],
        "webserver": [str(BIN / "dagster-webserver"), "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
    }
    procs: dict[str, subprocess.Popen] = {}

    def diagnostics() -> str:
        return "\n".join(f"--- {name}.log\n{_tail(logs / f'{name}.log')}" for name in commands)

    try:
        for name, cmd in commands.items():
            with open(logs / f"{name}.log", "wb") as log:  # own process group: stopped as a whole
                procs[name] = subprocess.Popen(
                    cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
                )
        status, server_info = _wait_ready(port, procs, diagnostics)
        ready = time.monotonic() - started

        assert server_info["dagster_version"] == status["version"] == "1.13.27"
        instance = status["instance"]
        assert instance["runLauncher"]["name"] == "EcsRunLauncher"
        assert instance["runQueuingSupported"] is True
        assert instance["runQueueConfig"]["maxConcurrentRuns"] == MAX_CONCURRENT_RUNS  # from the env var
        for tag in ("dagster/partition", "cfdb/size_class"):
            assert tag in instance["runQueueConfig"]["tagConcurrencyLimitsYaml"]

        # The code location loaded, with the asset jobs.
        entries = status["workspaceOrError"]["locationEntries"]
        assert [(e["name"], e["loadStatus"], e["locationOrLoadError"]["__typename"]) for e in entries] == [
            ("cfdb_assets", "LOADED", "RepositoryLocation")
        ], entries
        repos = status["repositoriesOrError"]
        assert repos["__typename"] == "RepositoryConnection", repos
        jobs = {job["name"] for repo in repos["nodes"] for job in repo["jobs"]}
        assert "encode_alignments" in jobs, jobs

        # The storage is really Postgres: Dagster's tables, and the daemons' heartbeats, are in the
        # throwaway database.
        engine = sa.create_engine(pg_database)
        try:
            tables = set(sa.inspect(engine).get_table_names())
            with engine.connect() as conn:
                beating = set(conn.execute(sa.text("SELECT daemon_type FROM daemon_heartbeats")).scalars())
        finally:
            engine.dispose()
        assert {"runs", "event_logs", "daemon_heartbeats", "instigators", "job_ticks"} <= tables, tables
        assert beating >= EXPECTED_DAEMONS, beating
    finally:
        _stop(list(procs.values()))

    # The same file in this process: the classes it names and the values it reads, and compute logs
    # landing in moto's S3 although the file has no endpoint_url (boto3 reads AWS_ENDPOINT_URL).
    from dagster import DagsterInstance

    for key, value in instance_env.items():
        monkeypatch.setenv(key, value)
    instance = DagsterInstance.from_config(str(home))
    try:
        storages = (instance.run_storage, instance.event_log_storage, instance.schedule_storage)
        assert [type(s).__name__ for s in storages] == [
            "PostgresRunStorage", "PostgresEventLogStorage", "PostgresScheduleStorage"
        ]
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        launcher = instance.run_launcher
        assert type(launcher).__name__ == "EcsRunLauncher"
        # Resolved through moto's ECS to the registered revision, which holds the container.
        assert launcher.task_definition.endswith(f":task-definition/{aws['CFDB_RUN_TASK_DEFINITION']}:1")
        assert launcher.container_name == aws["CFDB_RUN_CONTAINER"]
        assert launcher.use_current_ecs_task_config is True
        assert launcher.secrets_tags == []
        assert instance.run_monitoring_enabled and instance.run_retries_enabled
        assert instance.run_monitoring_start_timeout_seconds >= 600
        assert instance.run_monitoring_max_resume_run_attempts == 0
        assert instance.run_retries_max_retries == 2
        assert instance.run_retries_retry_on_asset_or_op_failure is False

        manager = instance.compute_log_manager
        assert type(manager).__name__ == "S3ComputeLogManager"
        with manager.capture_logs(["e2e-run", "compute_logs", "step"]):
            print("hello from a step", flush=True)
        s3 = boto3.client("s3", endpoint_url=aws["AWS_ENDPOINT_URL"], region_name="us-east-1")
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket=aws["CFDB_COMPUTE_LOG_BUCKET"]).get("Contents", [])]
        assert "dagster/compute-logs/storage/e2e-run/compute_logs/step.out" in keys, keys
    finally:
        instance.dispose()
    print(f"production instance: migrated {migrated:.1f} s, daemons healthy and webserver up "
          f"{ready:.1f} s, total {time.monotonic() - started:.1f} s")
