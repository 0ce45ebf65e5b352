"""The request ledger (DESIGN.md §5): which cache_keys were asked for, and each attempt to build one.

SQL through SQLAlchemy Core, SQLite by default and Postgres in production. A partial unique index on
``jobs.cache_key`` over the active states makes "at most one active job per key" a database fact, so
concurrent first requests, from any number of API processes, get the same job.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import dagster as dg
import sqlalchemy as sa
from pydantic import PrivateAttr

from resources.ledger_maintenance import LedgerMaintenance
from resources.ledger_schema import (
    ACTIVE,
    ACTIVE_STATES,
    FAILED,
    PERMANENT,
    QUEUED,
    REQUESTED,
    RUNNING,
    SUCCEEDED,
    TRANSIENT,
    ErrorKind,
    JobState,
    create_tables,
    jobs,
    make_engine,
    sources,
)

__all__ = [
    "ACTIVE_STATES",
    "AdmissionRejected",
    "ErrorKind",
    "Job",
    "JobState",
    "Ledger",
    "LedgerError",
    "SourceRow",
    "SourceSpec",
]

ERROR_LIMIT = 1024
PROGRESS_LIMIT = 256
WAITING_FOR_WORKER = "waiting for a worker"  # a run was asked for; the reconciler says more once it exists



class LedgerError(Exception):
    """The ledger database cannot be reached or refused a write."""


class AdmissionRejected(Exception):
    """Too many active jobs to take new work now (answered 429)."""


@dataclass(frozen=True)
class SourceSpec:
    """What a request knows about the source behind a cache_key."""

    cache_key: str
    dcc: str
    local_id: str
    format: str
    family: str
    checksum: str
    size: int | None = None


@dataclass(frozen=True)
class SourceRow(SourceSpec):
    first_requested_at: datetime | None = None
    last_requested_at: datetime | None = None


@dataclass(frozen=True)
class Job:
    """One attempt to build a cache_key."""

    job_id: str
    cache_key: str
    state: JobState
    run_id: str | None
    stages: tuple[str, ...]
    error: str | None
    error_kind: ErrorKind | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    attempt: int = 1
    requested_at: datetime | None = None
    progress: str | None = None
    superseded_by: str | None = None
    worker: str | None = None  # JSON: the ECS task and size of the current attempt's run
    id: int = 0  # the ledger row (the reconciler's position)

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES


def _utc(value: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes; everything we store is UTC.
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def _job(row: Any) -> Job:
    values = {f.name: getattr(row, f.name) for f in fields(Job)}
    return Job(**{
        **values,
        "state": JobState(row.state),
        "stages": tuple(json.loads(row.stages or "[]")),
        "error_kind": ErrorKind(row.error_kind) if row.error_kind else None,
        **{k: _utc(values[k]) for k in ("created_at", "updated_at", "finished_at", "requested_at")},
    })


def _source(row: Any) -> SourceRow:
    values = {f.name: getattr(row, f.name) for f in fields(SourceRow)}
    return SourceRow(**{**values, **{k: _utc(values[k]) for k in ("first_requested_at", "last_requested_at")}})


def _now() -> datetime:
    return datetime.now(UTC)


class Ledger(LedgerMaintenance, dg.ConfigurableResource):
    """The SQL request ledger; ``url`` is any SQLAlchemy URL (sqlite:///…, postgresql://…)."""

    url: str

    _engine: sa.Engine | None = PrivateAttr(default=None)

    @property
    def engine(self) -> sa.Engine:
        if self._engine is None:
            engine = make_engine(self.url)
            try:
                create_tables(engine)
            except BaseException:
                engine.dispose()
                raise
            # Cached only once the tables exist: a database that was down at first use gets its
            # tables on the next call instead of never.
            self._engine = engine
        return self._engine

    def check(self) -> None:
        """Create the tables if needed; raise LedgerError when the database is unreachable."""
        try:
            with self.engine.connect() as conn:
                conn.execute(sa.select(1))
        except (sa.exc.SQLAlchemyError, OSError) as exc:
            raise LedgerError(
                f"The ledger database cannot be reached ({type(exc).__name__}); check CFDB_LEDGER_URL."
            ) from None

    def request(
        self, spec: SourceSpec, failure_retry: timedelta, maxACTIVE: int | None = None
    ) -> tuple[Job, bool]:
        """Record a request for ``spec.cache_key``; return its active job (or a new one) and
        whether this call created it. A permanent failure younger than ``failure_retry`` is
        returned instead of a new job, so a broken source is not downloaded again on every GET.
        With ``maxACTIVE``, new work beyond that many active jobs raises AdmissionRejected;
        attaching to an existing job never does."""
        now = _now()
        with self._begin() as conn:
            self._upsert_source(conn, spec, now)
        for _ in range(5):
            with self._begin() as conn:
                latest = conn.execute(
                    sa.select(jobs).where(jobs.c.cache_key == spec.cache_key).order_by(jobs.c.id.desc()).limit(1)
                ).first()
                if latest is not None:
                    job = _job(latest)
                    if job.active:
                        return job, False
                    if (
                        job.state == FAILED
                        and job.error_kind == PERMANENT
                        and job.finished_at is not None
                        and now - job.finished_at < failure_retry
                    ):
                        return job, False
            if maxACTIVE is not None and self.active_count() >= maxACTIVE:
                raise AdmissionRejected(f"{maxACTIVE} preprocessing jobs are already active.")
            job_id = str(uuid.uuid4())
            try:
                with self._begin() as conn:
                    conn.execute(
                        jobs.insert().values(
                            job_id=job_id,
                            cache_key=spec.cache_key,
                            state=QUEUED,
                            stages="[]",
                            created_at=now,
                            updated_at=now,
                        )
                    )
                    if latest is not None:  # the failed job this one replaces points at it
                        conn.execute(jobs.update().where(jobs.c.id == latest.id).values(superseded_by=job_id))
            except sa.exc.IntegrityError:
                continue  # another request claimed the key first: attach to its job
            return self._get_job(job_id), True
        raise LedgerError(f"Could not claim or attach to a job for {spec.cache_key} after 5 attempts.")

    def active_count(self) -> int:
        """How many jobs are queued or running (the admission ceiling's count; soft under races)."""
        with self._connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(jobs).where(ACTIVE)).scalar_one()

    def register_source(self, spec: SourceSpec) -> None:
        """Record a source without requesting work (e.g. before an operator backfill)."""
        self.register_sources([spec])

    def job(self, job_id: str) -> Job | None:
        """The job with this id, or None."""
        with self._connect() as conn:
            row = conn.execute(sa.select(jobs).where(jobs.c.job_id == job_id)).first()
        return _job(row) if row else None

    def latest_jobs(self, cache_keys: list[str]) -> dict[str, Job]:
        """The newest job of each key that has one."""
        if not cache_keys:
            return {}
        newest = (
            sa.select(sa.func.max(jobs.c.id))
            .where(jobs.c.cache_key.in_(cache_keys))
            .group_by(jobs.c.cache_key)
            .scalar_subquery()
        )
        with self._connect() as conn:
            rows = conn.execute(sa.select(jobs).where(jobs.c.id.in_(newest))).all()
        return {row.cache_key: _job(row) for row in rows}

    def source(self, cache_key: str) -> SourceRow | None:
        """The source behind a cache_key (how an asset resolves its partition)."""
        with self._connect() as conn:
            row = conn.execute(sa.select(sources).where(sources.c.cache_key == cache_key)).first()
        return _source(row) if row else None

    def queued(self, limit: int = 500) -> list[tuple[Job, SourceRow]]:
        """The oldest queued jobs with their sources (what the on-demand sensor turns into runs)."""
        query = (
            sa.select(jobs, *[c.label(f"src_{c.name}") for c in sources.c])
            .join(sources, sources.c.cache_key == jobs.c.cache_key)
            .where(jobs.c.state == QUEUED)
            .order_by(jobs.c.id)
            .limit(limit)
        )
        with self._connect() as conn:
            rows = conn.execute(query).all()
        out = []
        for row in rows:
            src = _source(SimpleNamespace(**{c.name: getattr(row, f"src_{c.name}") for c in sources.c}))
            out.append((_job(row), src))
        return out

    def has_queued(self) -> bool:
        """Whether any job waits for a run (one indexed row lookup: the sensor polls it while it
        listens for requests)."""
        with self._connect() as conn:
            return conn.execute(sa.select(jobs.c.id).where(jobs.c.state == QUEUED).limit(1)).first() is not None

    def in_flight(self, after_id: int = 0, limit: int = 200) -> list[Job]:
        """Requested and running jobs after the ledger row ``after_id``, in row order (the reconciler
        walks them a batch per tick, from where it stopped, and wraps around)."""
        query = sa.select(jobs).where(jobs.c.state.in_((REQUESTED, RUNNING)), jobs.c.id > after_id)
        with self._connect() as conn:
            rows = conn.execute(query.order_by(jobs.c.id).limit(limit)).all()
        return [_job(row) for row in rows]

    def requested_count(self) -> int:
        """How many jobs have a run asked for that has not started yet (the sensor's run window)."""
        with self._connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(jobs).where(jobs.c.state == REQUESTED)).scalar_one()

    def mark_requested(self, job_ids: list[str]) -> int:
        """queued → requested (a run was asked for); how many were still queued."""
        if not job_ids:
            return 0
        now = _now()
        with self._begin() as conn:
            result = conn.execute(
                jobs.update()
                .where(jobs.c.job_id.in_(job_ids), jobs.c.state == QUEUED)
                .values(state=REQUESTED, requested_at=now, updated_at=now, progress=WAITING_FOR_WORKER)
            )
        return result.rowcount

    def mark_running(self, job_id: str, run_id: str) -> bool:
        """→ running, recording the Dagster run (a retry run replaces it); False once the job ended."""
        return self._update(job_id, state=RUNNING, run_id=run_id)

    def requeue(self, job_id: str, attempt: int, error: str | None = None) -> bool:
        """Back to queued, for the sensor to request a run again. With ``error`` (a transient
        failure of attempt ``attempt``) the next attempt gets a new run; without (the run was never
        created) the same attempt is requested again. Compare-and-set on ``attempt``, so two
        reconcilers never skip one; the stages done are kept (the next run reuses the store)."""
        now = _now()
        values: dict[str, Any] = {
            "state": QUEUED, "run_id": None, "requested_at": None, "progress": None, "worker": None, "updated_at": now}
        if error is not None:
            values.update(attempt=attempt + 1, error=error[:ERROR_LIMIT])
        with self._begin() as conn:
            result = conn.execute(
                jobs.update().where(jobs.c.job_id == job_id, jobs.c.attempt == attempt, ACTIVE).values(**values)
            )
        return result.rowcount == 1

    def set_progress(self, job_id: str, attempt: int, progress: str) -> bool:
        """Record what attempt ``attempt`` of an active job is doing (a no-op once it ended or a
        later attempt took over)."""
        with self._begin() as conn:
            result = conn.execute(
                jobs.update()
                .where(jobs.c.job_id == job_id, jobs.c.attempt == attempt, ACTIVE)
                .values(progress=progress[:PROGRESS_LIMIT], updated_at=_now())
            )
        return result.rowcount == 1

    def set_worker(self, job_id: str, attempt: int, worker: str) -> bool:
        """Record the worker (ECS task and size, JSON) that attempt ``attempt`` of an active job got."""
        with self._begin() as conn:
            result = conn.execute(
                jobs.update().where(jobs.c.job_id == job_id, jobs.c.attempt == attempt, ACTIVE).values(worker=worker)
            )
        return result.rowcount == 1

    def add_stage(self, job_id: str, stage: str) -> bool:
        """Record a finished stage ("data", "index") of an active job."""
        for _ in range(10):
            job = self.job(job_id)
            if job is None or not job.active:
                return False
            if stage in job.stages:
                return True
            stages = json.dumps([*job.stages, stage])
            # Compare-and-set on the old list: portable (SQLite has no row locks) and never loses a
            # stage written concurrently, nor writes onto a job that ended in between.
            with self._begin() as conn:
                result = conn.execute(
                    jobs.update()
                    .where(jobs.c.job_id == job_id, jobs.c.stages == json.dumps(list(job.stages)), ACTIVE)
                    .values(stages=stages, updated_at=_now())
                )
            if result.rowcount == 1:
                return True
        raise LedgerError(f"Could not record stage {stage!r} of job {job_id} after 10 attempts.")

    def finish(self, job_id: str, succeeded: bool, error: str | None = None, permanent: bool = False) -> bool:
        """Write a terminal state; a no-op (False) when the job already ended (late writes)."""
        now = _now()
        values: dict[str, Any] = {"state": SUCCEEDED if succeeded else FAILED, "finished_at": now}
        if not succeeded:
            values["error"] = (error or "The run failed without an error message.")[:ERROR_LIMIT]
            values["error_kind"] = PERMANENT if permanent else TRANSIENT
        else:
            values["error"] = None  # a retried attempt's error is history once the build succeeds
        return self._update(job_id, **values)

    def _update(self, job_id: str, **values: Any) -> bool:
        values.setdefault("updated_at", _now())
        with self._begin() as conn:
            result = conn.execute(jobs.update().where(jobs.c.job_id == job_id, ACTIVE).values(**values))
        return result.rowcount == 1

    def _get_job(self, job_id: str) -> Job:
        job = self.job(job_id)
        assert job is not None
        return job

    @staticmethod
    def _upsert_source(conn: sa.Connection, spec: SourceSpec, now: datetime) -> None:
        # The latest requester's record is the one an asset fetches (same bytes, same key; the first
        # requester's record may since have lost its access URL).
        updated = conn.execute(
            sources.update()
            .where(sources.c.cache_key == spec.cache_key)
            .values(dcc=spec.dcc, local_id=spec.local_id, size=spec.size, last_requested_at=now)
        )
        if updated.rowcount:
            return
        insert = {**spec.__dict__, "first_requested_at": now, "last_requested_at": now}
        if conn.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            conn.execute(pg_insert(sources).values(**insert).on_conflict_do_nothing())
        else:
            conn.execute(sources.insert().prefix_with("OR IGNORE").values(**insert))

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sa.Connection]:
        with self._unreachable_as_ledger_error(), self.engine.connect() as conn:
            yield conn

    @contextlib.contextmanager
    def _begin(self) -> Iterator[sa.Connection]:
        with self._unreachable_as_ledger_error(), self.engine.begin() as conn:
            yield conn

    @staticmethod
    @contextlib.contextmanager
    def _unreachable_as_ledger_error() -> Iterator[None]:
        # Connection trouble at any point (connect, query, commit) is a LedgerError (503 at the
        # edge); an IntegrityError is a fact the caller handles (a concurrent claim).
        try:
            yield
        except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
            raise LedgerError(f"The ledger database cannot be reached ({type(exc).__name__}).") from None
