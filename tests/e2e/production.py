"""The production layout for end-to-end tests: a throwaway Postgres database (Dagster's storage and
the ledger), moto standing in for AWS (the run task definition, the artifact and compute-log
buckets, the catalog snapshot), and the environment deploy/dagster.yaml and the project read."""

from __future__ import annotations

import contextlib
import hashlib
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
import sqlalchemy as sa

from tests.conftest import POSTGRES_URL

ROOT = Path(__file__).resolve().parents[2]
DEPLOY_YAML = ROOT / "deploy" / "dagster.yaml"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


def _admin_engine() -> sa.Engine:
    url = sa.make_url(POSTGRES_URL)
    if url.drivername == "postgresql":  # SQLAlchemy 2.1 would pick psycopg 3; we ship psycopg2
        url = url.set(drivername="postgresql+psycopg2")
    return sa.create_engine(url, isolation_level="AUTOCOMMIT")


@contextlib.contextmanager
def fresh_database() -> Iterator[sa.URL]:
    """A new database on the test server, dropped afterwards."""
    name = f"cfdb_e2e_{uuid.uuid4().hex[:12]}"
    admin = _admin_engine()
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as exc:
        pytest.fail(f"PostgreSQL is not reachable at {POSTGRES_URL}: {exc}; start it (see .ci/run).")
    try:
        yield sa.make_url(POSTGRES_URL).set(drivername="postgresql+psycopg2", database=name)
    finally:
        with admin.connect() as conn:  # FORCE: a killed process may leave a connection behind
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def aws_client(service: str, endpoint: str):
    return boto3.client(service, endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def aws_resources(endpoint: str, register_run_task: bool = True) -> dict[str, str]:
    """The run task definition in moto's ECS and the compute-log and artifact buckets; the variables
    that name them."""
    suffix = uuid.uuid4().hex[:10]
    family, container = f"cfdb-run-{suffix}", "run"
    if register_run_task:  # the launcher checks at start-up that it exists and holds the container
        aws_client("ecs", endpoint).register_task_definition(
            family=family, requiresCompatibilities=["FARGATE"], networkMode="awsvpc", cpu="1024", memory="4096",
            containerDefinitions=[{"name": container, "image": "cfdb-assets:test", "memory": 4096, "essential": True}],
        )
    s3 = aws_client("s3", endpoint)
    logs, artifacts = f"cfdb-logs-{suffix}", f"cfdb-artifacts-{suffix}"
    for bucket in (logs, artifacts):
        s3.create_bucket(Bucket=bucket)
    return {
        **CREDENTIALS,
        "AWS_ENDPOINT_URL": endpoint,
        "CFDB_RUN_TASK_DEFINITION": family,
        "CFDB_RUN_CONTAINER": container,
        "CFDB_COMPUTE_LOG_BUCKET": logs,
        "CFDB_COMPUTE_LOG_PREFIX": "dagster/compute-logs",
        "CFDB_STORE": f"s3://{artifacts}/artifacts",
    }


def catalog_snapshot(aws: dict[str, str], docs: list[dict] | None = None) -> str:
    """A JSON Lines catalog on the artifact bucket (production reads an S3 snapshot or MongoDB, never
    a local file); by default one small BED record."""
    if docs is None:
        docs = [{
            "submission": "encode",
            "local_id": "ENCFF000BED",
            "md5": hashlib.md5(b"chr1\t10\t50\tpeak0\n").hexdigest(),
            "size_in_bytes": 17,
            "access_url": "https://data.example.org/ENCFF000BED.bed",
            "filename": "ENCFF000BED.bed",
            "file_format": {"id": "format:3003", "name": "BED"},
            "dcc": {"dcc_abbreviation": "ENCODE"},
            "data_access_level": "public",
        }]
    bucket = aws["CFDB_STORE"].removeprefix("s3://").split("/")[0]
    body = "".join(json.dumps(doc) + "\n" for doc in docs).encode()
    aws_client("s3", aws["AWS_ENDPOINT_URL"]).put_object(Bucket=bucket, Key="catalog/catalog.jsonl", Body=body)
    return f"s3://{bucket}/catalog/catalog.jsonl"


def instance_env(database: sa.URL, aws: dict[str, str], home: Path, max_concurrent_runs: int) -> dict[str, str]:
    """What deploy/dagster.yaml reads, as the task definitions set it (the password may be empty:
    trust auth), with DAGSTER_HOME holding that file itself."""
    return {
        **aws,
        "DAGSTER_HOME": str(home),
        "DAGSTER_PG_HOST": database.host,
        "DAGSTER_PG_PORT": str(database.port or 5432),
        "DAGSTER_PG_USER": database.username,
        "DAGSTER_PG_PASSWORD": database.password or "",
        "DAGSTER_PG_DB": database.database,
        "CFDB_MAX_CONCURRENT_RUNS": str(max_concurrent_runs),
    }


def production_home(path: Path) -> Path:
    """A DAGSTER_HOME whose dagster.yaml is the committed deploy/dagster.yaml (not a test variant)."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "dagster.yaml").symlink_to(DEPLOY_YAML)
    return path
