"""The ledger's maintenance queries, for the operators' jobs: registering sources in batches
(``register_catalog``), retiring finished rows and asking which keys are in use (``housekeeping``),
and clearing a failure a later build made moot (the ``jobs_succeeded`` sensor). A mixin of
``resources.ledger.Ledger``: the same engine and transactions."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

import sqlalchemy as sa

from resources.ledger_schema import ACTIVE, FAILED, SUCCEEDED, jobs, sources

if TYPE_CHECKING:
    from resources.ledger import SourceSpec

__all__ = ["LedgerMaintenance"]


class LedgerMaintenance:
    """Batch and housekeeping queries (see the module docstring)."""

    def register_sources(self, specs: list[SourceSpec]) -> int:
        """Record sources without requesting work, in one transaction; how many were new. A known
        key keeps its first and last request times, and takes the latest record's dcc, local_id
        and size (the same bytes may be listed under another accession)."""
        if not specs:
            return 0
        now = datetime.now(UTC)
        by_key = {spec.cache_key: spec for spec in specs}
        with self._begin() as conn:
            known = set(conn.execute(sa.select(sources.c.cache_key).where(sources.c.cache_key.in_(by_key))).scalars())
            for key in known:
                spec = by_key[key]
                conn.execute(sources.update().where(sources.c.cache_key == key)
                             .values(dcc=spec.dcc, local_id=spec.local_id, size=spec.size))
            new = [{**spec.__dict__, "first_requested_at": now, "last_requested_at": now}
                   for key, spec in by_key.items() if key not in known]
            if new:
                if conn.dialect.name == "postgresql":
                    from sqlalchemy.dialects.postgresql import insert as pg_insert

                    conn.execute(pg_insert(sources).on_conflict_do_nothing(), new)
                else:
                    conn.execute(sources.insert().prefix_with("OR IGNORE"), new)
        return len(new)

    def delete_finished(self, before: datetime, remove: bool, limit: int = 10_000) -> list[str]:
        """Jobs that ended before ``before`` (the original's 7-day TTL), oldest first, at most
        ``limit``; deleted when ``remove``. An active job is never among them."""
        ended = jobs.c.state.in_((SUCCEEDED, FAILED)) & (jobs.c.finished_at < before)
        with self._begin() as conn:
            rows = conn.execute(sa.select(jobs.c.id, jobs.c.job_id).where(ended).order_by(jobs.c.id).limit(limit)).all()
            if remove and rows:
                conn.execute(jobs.delete().where(jobs.c.id.in_([r.id for r in rows]), ended))
        return [r.job_id for r in rows]

    def active_keys(self, cache_keys: list[str]) -> set[str]:
        """Which of these keys have an active job (their store entries are in use)."""
        if not cache_keys:
            return set()
        with self._connect() as conn:
            return set(conn.execute(sa.select(jobs.c.cache_key).where(jobs.c.cache_key.in_(cache_keys), ACTIVE)).scalars())

    def clear_failure(self, cache_key: str) -> bool:
        """A later run built ``cache_key``: its latest job, if it failed, becomes succeeded (the
        failure is no longer remembered, and /jobs tells the truth). False when there was none."""
        now = datetime.now(UTC)
        with self._begin() as conn:
            latest = sa.select(sa.func.max(jobs.c.id)).where(jobs.c.cache_key == cache_key).scalar_subquery()
            result = conn.execute(
                jobs.update().where(jobs.c.id == latest, jobs.c.state == FAILED)
                .values(state=SUCCEEDED, error=None, error_kind=None, finished_at=now, updated_at=now)
            )
        return result.rowcount == 1
