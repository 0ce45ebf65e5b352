"""The ledger's schema: its state vocabulary, its two tables and their indexes, and how engines are
made (SQLite with WAL for the embedded profile, psycopg2 for Postgres)."""

from __future__ import annotations

import time
from enum import StrEnum
from pathlib import Path

import sqlalchemy as sa

__all__ = [
    "ACTIVE",
    "ACTIVE_STATES",
    "ErrorKind",
    "JobState",
    "create_tables",
    "jobs",
    "make_engine",
    "sources",
]


class JobState(StrEnum):
    """A job's state in the ledger (``/jobs`` shows the original service's names for them).

    queued (waiting for the sensor) → requested (a run was asked for: the sensor never reads it
    again) → running (a run's first step started) → succeeded | failed. The reconciler moves any
    active job to what its Dagster run proves, and a transient failure back to queued."""

    QUEUED = "queued"
    REQUESTED = "requested"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class ErrorKind(StrEnum):
    """Whether a failure recurs on the same bytes (remembered) or not (the next request retries)."""

    PERMANENT = "permanent"
    TRANSIENT = "transient"


QUEUED, REQUESTED, RUNNING, SUCCEEDED, FAILED = JobState
ACTIVE_STATES = (QUEUED, REQUESTED, RUNNING)
PERMANENT, TRANSIENT = ErrorKind

metadata = sa.MetaData()

sources = sa.Table(
    "cfdb_sources",
    metadata,
    sa.Column("cache_key", sa.String(64), primary_key=True),
    sa.Column("dcc", sa.String(64), nullable=False),
    sa.Column("local_id", sa.String(256), nullable=False),
    sa.Column("format", sa.String(64), nullable=False),
    sa.Column("family", sa.String(32), nullable=False),
    sa.Column("checksum", sa.String(80), nullable=False),
    sa.Column("size", sa.BigInteger),
    sa.Column("first_requested_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("last_requested_at", sa.DateTime(timezone=True), nullable=False),
)

jobs = sa.Table(
    "cfdb_jobs",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("job_id", sa.String(36), nullable=False, unique=True),
    sa.Column("cache_key", sa.String(64), sa.ForeignKey("cfdb_sources.cache_key"), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("run_id", sa.String(64)),
    sa.Column("stages", sa.Text, nullable=False, default="[]"),
    sa.Column("error", sa.Text),
    sa.Column("error_kind", sa.String(16)),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
    # Added in wave 2 (see _migrate): the build attempt of this job (a run key is job_id:attempt),
    # and when its current run was requested.
    sa.Column("attempt", sa.Integer, nullable=False, server_default="1"),
    sa.Column("requested_at", sa.DateTime(timezone=True)),
    # What the run is doing now ("fetching 120 MB of 1.0 GB"), and the job that replaced this
    # failed one when the file was requested again (clients polling the old id follow it).
    sa.Column("progress", sa.String(256)),
    sa.Column("superseded_by", sa.String(36)),
    sa.Column("worker", sa.String(512)),  # the run's worker: its ECS task and size, as JSON
)
ACTIVE = jobs.c.state.in_(ACTIVE_STATES)
# v2: the predicate gained `requested`. The first release's index (no suffix) is dropped by _migrate.
ONE_ACTIVE_PER_KEY = sa.Index(
    "cfdb_jobs_one_active_per_key_v2",
    jobs.c.cache_key,
    unique=True,
    sqlite_where=ACTIVE,
    postgresql_where=ACTIVE,
)
sa.Index("cfdb_jobs_key_id", jobs.c.cache_key, jobs.c.id)
sa.Index("cfdb_jobs_state_id", jobs.c.state, jobs.c.id)


def create_tables(engine: sa.Engine, attempts: int = 5) -> None:
    """create_all, tolerating other processes creating the same tables at the same moment (the
    loser of that race gets "already exists"; a retry with checkfirst then sees the tables)."""
    with engine.connect():
        pass  # an unreachable database fails here, at once, without retries
    for attempt in range(attempts):
        try:
            metadata.create_all(engine, checkfirst=True)
            _migrate(engine)
            return
        except (sa.exc.ProgrammingError, sa.exc.IntegrityError, sa.exc.OperationalError):
            if attempt == attempts - 1:
                raise
            time.sleep(0.05 * (attempt + 1))


def _migrate(engine: sa.Engine) -> None:
    """Bring a first-release ledger up to this schema (idempotent; concurrent callers are retried by
    create_tables): the new columns, and the one-active-job index whose predicate now includes
    ``requested``."""
    inspector = sa.inspect(engine)
    columns = {c["name"] for c in inspector.get_columns(jobs.name)}
    indexes = {i["name"] for i in inspector.get_indexes(jobs.name)}
    with engine.begin() as conn:
        if "attempt" not in columns:
            conn.execute(sa.text(f"ALTER TABLE {jobs.name} ADD COLUMN attempt INTEGER NOT NULL DEFAULT 1"))
        if "requested_at" not in columns:
            kind = "TIMESTAMP WITH TIME ZONE" if engine.dialect.name == "postgresql" else "DATETIME"
            conn.execute(sa.text(f"ALTER TABLE {jobs.name} ADD COLUMN requested_at {kind}"))
        if "progress" not in columns:
            conn.execute(sa.text(f"ALTER TABLE {jobs.name} ADD COLUMN progress VARCHAR(256)"))
        if "superseded_by" not in columns:
            conn.execute(sa.text(f"ALTER TABLE {jobs.name} ADD COLUMN superseded_by VARCHAR(36)"))
        if "worker" not in columns:
            conn.execute(sa.text(f"ALTER TABLE {jobs.name} ADD COLUMN worker VARCHAR(512)"))
        if ONE_ACTIVE_PER_KEY.name not in indexes:
            ONE_ACTIVE_PER_KEY.create(conn)
        if "cfdb_jobs_one_active_per_key" in indexes:
            conn.execute(sa.text("DROP INDEX cfdb_jobs_one_active_per_key"))


def make_engine(url: str) -> sa.Engine:
    if url.startswith("sqlite"):
        database = sa.make_url(url).database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @sa.event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):
            # WAL lets the API, the sensor and run workers read while one of them writes.
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA busy_timeout=30000")
            for attempt in range(100):
                # Switching a new file to WAL does not wait on busy_timeout: processes opening it
                # together get "database is locked" until one has switched it (WAL persists).
                try:
                    cur.execute("PRAGMA journal_mode=WAL")
                    break
                except dbapi_conn.OperationalError:
                    if attempt == 99:
                        raise
                    time.sleep(0.05)
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    parsed = sa.make_url(url)
    if parsed.drivername == "postgresql":
        # SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3, which is not installed; the
        # project (and dagster-postgres) ship psycopg2.
        parsed = parsed.set(drivername="postgresql+psycopg2")
    return sa.create_engine(parsed, pool_pre_ping=True)
