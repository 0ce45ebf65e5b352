"""Shared fixtures: real Postgres (one throwaway schema per test), demo data, resources on tmp_path."""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from synthetic.demo import write_demo
from resources import FileCatalog, Ledger, LocalStore, Settings

POSTGRES_URL = os.environ.get("CFDB_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture
def postgres_url():
    """A Postgres URL whose search_path is a fresh schema, dropped afterwards. Fails (never skips)
    when the server is down: `make test` and CI start it."""
    schema = f"cfdb_t_{uuid.uuid4().hex[:12]}"
    admin_url = sa.make_url(POSTGRES_URL)
    if admin_url.drivername == "postgresql":  # SQLAlchemy 2.1 would pick psycopg 3; we ship psycopg2
        admin_url = admin_url.set(drivername="postgresql+psycopg2")
    admin = sa.create_engine(admin_url)
    try:
        with admin.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    except sa.exc.OperationalError as exc:
        pytest.fail(f"PostgreSQL is not reachable at {POSTGRES_URL}: {exc}; start it (see .ci/run).")
    yield f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    with admin.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def ledger_url(request, tmp_path):
    """The ledger URL, once for SQLite and once for Postgres."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def ledger(ledger_url) -> Ledger:
    ledger = Ledger(url=ledger_url)
    ledger.check()
    yield ledger
    ledger.engine.dispose()


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory) -> Path:
    """The deterministic demo catalog and its source files (read-only: copy before changing)."""
    out = tmp_path_factory.mktemp("demo")
    write_demo(out)
    return out


@pytest.fixture
def settings(tmp_path, demo_dir) -> Settings:
    """Settings on a fresh data dir and the demo catalog."""
    return Settings.from_environ(
        {"CFDB_DATA_DIR": str(tmp_path / "data"), "CFDB_CATALOG": str(demo_dir / "catalog.jsonl")}
    )


@pytest.fixture
def store(settings) -> LocalStore:
    store = LocalStore(root=settings.store)
    store.check()
    return store


@pytest.fixture
def catalog(settings) -> FileCatalog:
    return FileCatalog(path=settings.catalog)


@pytest.fixture(scope="session")
def moto_server():
    """moto's S3 stand-in as a real HTTP server on loopback (no AWS can be reached from here)."""
    from moto.server import ThreadedMotoServer

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3_bucket(moto_server, monkeypatch):
    """A fresh bucket on the moto server; fake credentials for boto3."""
    import boto3

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    name = f"cfdb-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1").create_bucket(Bucket=name)
    return name
