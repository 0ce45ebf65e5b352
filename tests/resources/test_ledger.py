"""The request ledger, on SQLite and on Postgres (the ``ledger`` fixture runs every test on both)."""

from __future__ import annotations

import multiprocessing
from pathlib import Path
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from resources.ledger import Ledger, LedgerError, SourceSpec, jobs

KEY = "0123456789abcdef0123456789abcdef"
HOUR = timedelta(hours=1)


def _spec(key: str = KEY, **changes) -> SourceSpec:
    values = {
        "cache_key": key,
        "dcc": "encode",
        "local_id": f"ENCFF{key[:6].upper()}",
        "format": "BED",
        "family": "intervals",
        "checksum": "md5:" + "a" * 32,
        "size": 12_345,
    }
    values.update(changes)
    return SourceSpec(**values)


def _key(n: int) -> str:
    return f"{n:032x}"


# --- request ---------------------------------------------------------------------------------


def test_first_request_creates_a_queued_job_and_records_the_source(ledger):
    job, created = ledger.request(_spec(), HOUR)

    assert created is True
    assert job.cache_key == KEY
    assert job.state == "queued"
    assert job.active is True
    assert job.run_id is None
    assert job.stages == ()
    assert job.error is None and job.error_kind is None
    assert job.finished_at is None
    assert job.created_at.tzinfo is not None
    assert ledger.job(job.job_id) == job

    source = ledger.source(KEY)
    assert (source.dcc, source.local_id, source.format, source.family, source.checksum, source.size) == (
        "encode",
        "ENCFF012345",
        "BED",
        "intervals",
        "md5:" + "a" * 32,
        12_345,
    )
    assert source.first_requested_at == source.last_requested_at == job.created_at


def test_unknown_job_and_source_are_none(ledger):
    assert ledger.job(str(uuid.uuid4())) is None
    assert ledger.source(KEY) is None


def test_second_request_returns_the_same_job_and_updates_last_requested_at(ledger):
    first, _ = ledger.request(_spec(), HOUR)
    before = ledger.source(KEY)
    time.sleep(0.01)

    second, created = ledger.request(_spec(), HOUR)

    assert created is False
    assert second.job_id == first.job_id
    assert second.state == "queued"
    after = ledger.source(KEY)
    assert after.first_requested_at == before.first_requested_at
    assert after.last_requested_at > before.last_requested_at


def test_request_for_another_key_creates_another_job(ledger):
    a, _ = ledger.request(_spec(_key(1)), HOUR)
    b, created = ledger.request(_spec(_key(2)), HOUR)

    assert created is True
    assert a.job_id != b.job_id
    assert ledger.source(_key(2)).local_id == _spec(_key(2)).local_id


def test_fifty_concurrent_requests_get_one_job(ledger_url, ledger):
    ledgers = [Ledger(url=ledger_url) for _ in range(50)]
    barrier = threading.Barrier(len(ledgers))

    def request(own: Ledger):
        barrier.wait(timeout=60)
        return own.request(_spec(), HOUR)

    try:
        with ThreadPoolExecutor(max_workers=len(ledgers)) as pool:
            results = [f.result(timeout=120) for f in [pool.submit(request, own) for own in ledgers]]
    finally:
        for own in ledgers:
            own.engine.dispose()

    assert sum(created for _, created in results) == 1
    assert len({job.job_id for job, _ in results}) == 1
    (job_id,) = {job.job_id for job, _ in results}
    with ledger.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(jobs)).scalar() == 1
    assert ledger.job(job_id).state == "queued"


def _request_in_process(url, key, barrier, results):
    """Runs in a spawned process: its own interpreter, its own Ledger and engine."""
    try:
        own = Ledger(url=url)
        barrier.wait(timeout=120)
        job, created = own.request(_spec(key), HOUR)
        results.put((job.job_id, created))
    except Exception as exc:  # noqa: BLE001 -- reported to the parent, else it is just an exit code
        results.put(("error", repr(exc)))


def _request_from_processes(url: str, key: str, count: int = 8) -> list[tuple[str, bool]]:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(count)
    results = ctx.Queue()
    processes = [ctx.Process(target=_request_in_process, args=(url, key, barrier, results)) for _ in range(count)]
    for process in processes:
        process.start()
    try:
        out = [results.get(timeout=180) for _ in processes]
    finally:
        for process in processes:
            process.join(timeout=60)
            if process.is_alive():
                process.kill()
    assert [p.exitcode for p in processes] == [0] * count
    assert [r for r in out if r[0] == "error"] == []
    return out


def test_concurrent_requests_from_separate_processes_get_one_job(ledger_url, ledger):
    results = _request_from_processes(ledger_url, KEY)

    assert sum(created for _, created in results) == 1
    assert len({job_id for job_id, _ in results}) == 1
    assert ledger.latest_jobs([KEY])[KEY].job_id == results[0][0]


def test_processes_starting_on_a_fresh_database_get_one_job(ledger_url):
    # No `ledger` fixture: nothing has created the tables yet, so the processes race to do it.
    results = _request_from_processes(ledger_url, KEY)

    assert sum(created for _, created in results) == 1
    assert len({job_id for job_id, _ in results}) == 1


# --- lifecycle -------------------------------------------------------------------------------


def test_mark_running_sets_running_and_the_run_id(ledger):
    job, _ = ledger.request(_spec(), HOUR)

    assert ledger.mark_running(job.job_id, "run-123") is True

    running = ledger.job(job.job_id)
    assert running.state == "running"
    assert running.run_id == "run-123"
    assert running.active is True
    assert running.finished_at is None
    assert running.updated_at >= job.updated_at


def test_request_while_running_returns_the_running_job(ledger):
    job, _ = ledger.request(_spec(), HOUR)
    ledger.mark_running(job.job_id, "run-1")

    again, created = ledger.request(_spec(), HOUR)

    assert created is False
    assert again.job_id == job.job_id
    assert again.state == "running"


def test_add_stage_appends_stages_without_duplicates(ledger):
    job, _ = ledger.request(_spec(), HOUR)
    ledger.mark_running(job.job_id, "run-1")

    assert ledger.add_stage(job.job_id, "data") is True
    assert ledger.add_stage(job.job_id, "index") is True
    assert ledger.add_stage(job.job_id, "data") is True

    assert ledger.job(job.job_id).stages == ("data", "index")


def test_finish_success_sets_succeeded_and_finished_at(ledger):
    job, _ = ledger.request(_spec(), HOUR)
    ledger.mark_running(job.job_id, "run-1")

    assert ledger.finish(job.job_id, succeeded=True) is True

    done = ledger.job(job.job_id)
    assert done.state == "succeeded"
    assert done.active is False
    assert done.finished_at is not None
    assert done.finished_at >= job.created_at
    assert done.error is None and done.error_kind is None
    assert done.run_id == "run-1"


def test_finish_failure_records_error_and_kind(ledger):
    job, _ = ledger.request(_spec(), HOUR)

    assert ledger.finish(job.job_id, succeeded=False, error="samtools exited 1") is True

    failed = ledger.job(job.job_id)
    assert (failed.state, failed.error, failed.error_kind) == ("failed", "samtools exited 1", "transient")
    assert failed.finished_at is not None


def test_finish_failure_without_a_message_records_a_default(ledger):
    job, _ = ledger.request(_spec(), HOUR)

    ledger.finish(job.job_id, succeeded=False, permanent=True)

    failed = ledger.job(job.job_id)
    assert failed.error == "The run failed without an error message."
    assert failed.error_kind == "permanent"


@pytest.mark.parametrize(
    "ending",
    [
        {"succeeded": True},
        {"succeeded": False, "error": "boom"},
        {"succeeded": False, "error": "bad source", "permanent": True},
    ],
    ids=["succeeded", "transient", "permanent"],
)
def test_late_writes_after_a_terminal_state_are_no_ops(ledger, ending):
    job, _ = ledger.request(_spec(), HOUR)
    ledger.mark_running(job.job_id, "run-1")
    ledger.add_stage(job.job_id, "data")
    assert ledger.finish(job.job_id, **ending) is True
    ended = ledger.job(job.job_id)
    time.sleep(0.01)

    assert ledger.mark_running(job.job_id, "run-2") is False
    assert ledger.add_stage(job.job_id, "index") is False
    assert ledger.finish(job.job_id, succeeded=True) is False
    assert ledger.finish(job.job_id, succeeded=False, error="late", permanent=True) is False

    assert ledger.job(job.job_id) == ended  # including updated_at and finished_at


def test_writes_to_an_unknown_job_return_false(ledger):
    unknown = str(uuid.uuid4())

    assert ledger.mark_running(unknown, "run-1") is False
    assert ledger.add_stage(unknown, "data") is False
    assert ledger.finish(unknown, succeeded=True) is False


def test_error_text_is_truncated_to_1024_chars(ledger):
    job, _ = ledger.request(_spec(), HOUR)

    ledger.finish(job.job_id, succeeded=False, error="x" * 1000 + "y" * 5000)

    assert ledger.job(job.job_id).error == "x" * 1000 + "y" * 24


# --- retrying after an ending ----------------------------------------------------------------


def test_request_after_success_creates_a_new_job(ledger):
    job, _ = ledger.request(_spec(), HOUR)
    ledger.finish(job.job_id, succeeded=True)

    new, created = ledger.request(_spec(), HOUR)

    assert created is True
    assert new.job_id != job.job_id
    assert new.state == "queued"
    assert ledger.job(job.job_id).state == "succeeded"


def test_request_after_transient_failure_creates_a_new_job_immediately(ledger):
    job, _ = ledger.request(_spec(), HOUR)
    ledger.finish(job.job_id, succeeded=False, error="connection reset")

    new, created = ledger.request(_spec(), timedelta(days=30))

    assert created is True
    assert new.job_id != job.job_id
    assert new.state == "queued"


def test_request_within_failure_retry_after_permanent_failure_returns_the_failed_job(ledger):
    job, _ = ledger.request(_spec(), HOUR)
    ledger.finish(job.job_id, succeeded=False, error="checksum mismatch", permanent=True)
    before = ledger.source(KEY)
    time.sleep(0.01)

    again, created = ledger.request(_spec(), HOUR)

    assert created is False
    assert again.job_id == job.job_id
    assert (again.state, again.error, again.error_kind) == ("failed", "checksum mismatch", "permanent")
    assert ledger.source(KEY).last_requested_at > before.last_requested_at
    assert len(ledger.queued()) == 0


@pytest.mark.parametrize("window", [timedelta(0), timedelta(milliseconds=1)])
def test_request_after_failure_retry_window_creates_a_new_job(ledger, window):
    job, _ = ledger.request(_spec(), HOUR)
    ledger.finish(job.job_id, succeeded=False, error="checksum mismatch", permanent=True)
    time.sleep(0.02)

    new, created = ledger.request(_spec(), window)

    assert created is True
    assert new.job_id != job.job_id
    assert new.state == "queued"
    assert new.error is None


# --- the database's own guarantee ------------------------------------------------------------


def _insert_job(ledger: Ledger, state: str, key: str = KEY) -> None:
    now = datetime.now(UTC)
    with ledger.engine.begin() as conn:
        conn.execute(
            jobs.insert().values(
                job_id=str(uuid.uuid4()),
                cache_key=key,
                state=state,
                stages="[]",
                created_at=now,
                updated_at=now,
            )
        )


@pytest.mark.parametrize("second", ["queued", "running"])
@pytest.mark.parametrize("first", ["queued", "running"])
def test_database_refuses_a_second_active_job_for_a_key(ledger, first, second):
    ledger.register_source(_spec())
    _insert_job(ledger, first)

    with pytest.raises(sa.exc.IntegrityError):
        _insert_job(ledger, second)

    with ledger.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(jobs)).scalar() == 1


def test_database_allows_many_terminal_jobs_and_one_active_per_key(ledger):
    ledger.register_source(_spec(_key(1)))
    ledger.register_source(_spec(_key(2)))
    for state in ["failed", "succeeded", "failed", "succeeded", "failed"]:
        _insert_job(ledger, state, _key(1))
    _insert_job(ledger, "queued", _key(1))
    _insert_job(ledger, "queued", _key(2))  # another key's active job is no conflict

    with ledger.engine.connect() as conn:
        counts = dict(conn.execute(sa.select(jobs.c.state, sa.func.count()).group_by(jobs.c.state)).all())
    assert counts == {"failed": 3, "succeeded": 2, "queued": 2}


def test_register_source_records_without_requesting_work(ledger):
    ledger.register_source(_spec(size=None))

    source = ledger.source(KEY)
    assert source.size is None
    assert source.checksum == "md5:" + "a" * 32
    assert ledger.latest_jobs([KEY]) == {}
    assert ledger.queued() == []


# --- queries ---------------------------------------------------------------------------------


def test_latest_jobs_returns_the_newest_job_per_key(ledger):
    a1, _ = ledger.request(_spec(_key(1)), HOUR)
    ledger.finish(a1.job_id, succeeded=True)
    b1, _ = ledger.request(_spec(_key(2)), HOUR)
    ledger.finish(b1.job_id, succeeded=False, error="boom")
    b2, _ = ledger.request(_spec(_key(2)), HOUR)
    ledger.finish(b2.job_id, succeeded=False, error="boom again", permanent=True)
    a2, _ = ledger.request(_spec(_key(1)), HOUR)
    c1, _ = ledger.request(_spec(_key(3)), HOUR)

    latest = ledger.latest_jobs([_key(1), _key(2), _key(3), _key(4)])

    assert {key: job.job_id for key, job in latest.items()} == {
        _key(1): a2.job_id,
        _key(2): b2.job_id,
        _key(3): c1.job_id,
    }
    assert latest[_key(2)].error == "boom again"
    assert latest[_key(1)].state == "queued"
    assert ledger.latest_jobs([_key(2)]) == {_key(2): latest[_key(2)]}
    assert ledger.latest_jobs([]) == {}


def test_queued_returns_queued_jobs_oldest_first_with_their_sources(ledger):
    made = [ledger.request(_spec(_key(n), local_id=f"F{n}"), HOUR)[0] for n in range(1, 6)]
    ledger.mark_running(made[1].job_id, "run-2")
    ledger.finish(made[3].job_id, succeeded=True)

    queued = ledger.queued()

    assert [job.job_id for job, _ in queued] == [made[0].job_id, made[2].job_id, made[4].job_id]
    assert [source.local_id for _, source in queued] == ["F1", "F3", "F5"]
    for job, source in queued:
        assert job.state == "queued"
        assert source == ledger.source(job.cache_key)  # same values, same (UTC-aware) datetimes
        assert source.first_requested_at.tzinfo is not None
    assert [job.job_id for job, _ in ledger.queued(limit=2)] == [made[0].job_id, made[2].job_id]


def test_queued_excludes_a_job_once_it_is_running(ledger):
    job, _ = ledger.request(_spec(), HOUR)
    assert [j.job_id for j, _ in ledger.queued()] == [job.job_id]

    ledger.mark_running(job.job_id, "run-1")

    assert ledger.queued() == []


# --- connecting ------------------------------------------------------------------------------


def test_check_names_CFDB_LEDGER_URL_when_the_database_is_unreachable():
    unreachable = Ledger(url="postgresql://postgres@127.0.0.1:1/test")

    with pytest.raises(LedgerError, match="CFDB_LEDGER_URL"):
        unreachable.check()


def test_check_creates_the_tables_once_an_unreachable_database_comes_back(tmp_path):
    blocker = tmp_path / "not-yet"
    blocker.write_text("a file where the ledger's directory should be")
    late = Ledger(url=f"sqlite:///{blocker / 'ledger.db'}")
    with pytest.raises(LedgerError, match="CFDB_LEDGER_URL"):
        late.check()

    blocker.unlink()  # the directory is created on the next use
    late.check()
    job, created = late.request(_spec(), HOUR)

    assert created is True
    assert late.job(job.job_id).state == "queued"
    late.engine.dispose()


def test_bare_postgresql_url_uses_the_installed_psycopg2_driver(postgres_url):
    assert postgres_url.startswith("postgresql://")
    ledger = Ledger(url=postgres_url)

    ledger.check()

    assert ledger.engine.dialect.driver == "psycopg2"
    assert ledger.request(_spec(), HOUR)[1] is True
    ledger.engine.dispose()


def test_a_database_lost_after_startup_is_a_ledger_error_not_a_crash(tmp_path):
    path = tmp_path / "ledger.db"
    ledger = Ledger(url=f"sqlite:///{path}")
    ledger.check()
    ledger.engine.dispose()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    path.mkdir()  # what was the database file is now a directory: every query fails

    with pytest.raises(LedgerError, match="cannot be reached"):
        ledger.request(_spec(), HOUR)
    with pytest.raises(LedgerError, match="cannot be reached"):
        ledger.job("00000000-0000-0000-0000-000000000000")


def test_the_latest_requester_becomes_the_source_of_a_shared_key(ledger):
    ledger.request(_spec(dcc="encode", local_id="FIRST", size=1), HOUR)
    ledger.request(_spec(dcc="4dn", local_id="SECOND", size=2), HOUR)
    source = ledger.source(KEY)
    assert (source.dcc, source.local_id, source.size) == ("4dn", "SECOND", 2)



# --- the in-flight lifecycle: requested, retried attempts, the reconciler's walk ------------------


def test_mark_requested_moves_only_queued_jobs_and_stamps_the_time(ledger):
    job, _ = ledger.request(_spec(), HOUR)

    assert ledger.mark_requested([job.job_id]) == 1
    assert ledger.mark_requested([job.job_id]) == 0  # already requested
    requested = ledger.job(job.job_id)
    assert requested.state == "requested" and requested.active and requested.requested_at is not None
    assert requested.progress == "waiting for a worker"  # /jobs says something from the first tick on
    assert ledger.queued() == []
    again, created = ledger.request(_spec(), HOUR)  # a GET while requested attaches to the job
    assert not created and again.job_id == job.job_id


def test_requeue_after_a_transient_failure_is_the_next_attempt_of_the_same_job(ledger):
    job, _ = ledger.request(_spec(), HOUR)
    ledger.mark_requested([job.job_id])
    ledger.mark_running(job.job_id, "run-1")
    ledger.add_stage(job.job_id, "data")

    assert ledger.requeue(job.job_id, 1, error="The worker stopped; the build will be retried.") is True
    assert ledger.requeue(job.job_id, 1, error="a second reconciler, late") is False  # compare-and-set

    retried = ledger.job(job.job_id)
    assert (retried.state, retried.attempt, retried.run_id, retried.stages) == ("queued", 2, None, ("data",))
    assert retried.error == "The worker stopped; the build will be retried."
    assert [j.job_id for j, _ in ledger.queued()] == [job.job_id]
    ledger.finish(job.job_id, succeeded=True)
    assert ledger.job(job.job_id).error is None  # history once the build succeeded


def test_requeue_without_an_error_asks_for_the_same_attempt_again(ledger):
    job, _ = ledger.request(_spec(), HOUR)
    ledger.mark_requested([job.job_id])

    assert ledger.requeue(job.job_id, 1) is True
    assert (ledger.job(job.job_id).state, ledger.job(job.job_id).attempt) == ("queued", 1)


def test_in_flight_walks_requested_and_running_jobs_in_row_order_from_a_position(ledger):
    made = [ledger.request(_spec(_key(n)), HOUR)[0] for n in range(5)]
    ledger.mark_requested([j.job_id for j in made[:4]])
    ledger.mark_running(made[1].job_id, "run-1")
    ledger.finish(made[2].job_id, succeeded=True)

    first = ledger.in_flight(0, limit=2)
    rest = ledger.in_flight(first[-1].id, limit=2)

    assert [j.job_id for j in first] == [made[0].job_id, made[1].job_id]
    assert [j.job_id for j in rest] == [made[3].job_id]  # finished and queued jobs are not in flight


def test_a_first_release_ledger_is_migrated_in_place(ledger_url):
    # The first release's cfdb_jobs: no attempt/requested_at, and a one-active index over queued/running.
    engine = sa.create_engine(ledger_url.replace("postgresql://", "postgresql+psycopg2://", 1))
    pg = engine.dialect.name == "postgresql"
    key, ts = ("BIGSERIAL", "TIMESTAMP WITH TIME ZONE") if pg else ("INTEGER", "DATETIME")
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE cfdb_sources (cache_key VARCHAR(64) PRIMARY KEY, dcc VARCHAR(64) NOT NULL,"
                             " local_id VARCHAR(256) NOT NULL, format VARCHAR(64) NOT NULL, family VARCHAR(32) NOT NULL,"
                             f" checksum VARCHAR(80) NOT NULL, size BIGINT, first_requested_at {ts} NOT NULL,"
                             f" last_requested_at {ts} NOT NULL)"))
        conn.execute(sa.text(f"CREATE TABLE cfdb_jobs (id {key} PRIMARY KEY, job_id VARCHAR(36) NOT NULL UNIQUE,"
                             " cache_key VARCHAR(64) NOT NULL REFERENCES cfdb_sources(cache_key), state VARCHAR(16) NOT NULL,"
                             " run_id VARCHAR(64), stages TEXT NOT NULL, error TEXT, error_kind VARCHAR(16),"
                             f" created_at {ts} NOT NULL, updated_at {ts} NOT NULL, finished_at {ts})"))
        conn.execute(sa.text("CREATE UNIQUE INDEX cfdb_jobs_one_active_per_key ON cfdb_jobs (cache_key)"
                             " WHERE state IN ('queued', 'running')"))
    engine.dispose()

    ledger = Ledger(url=ledger_url)
    job, _ = ledger.request(_spec(), HOUR)
    ledger.mark_requested([job.job_id])
    again, created = ledger.request(_spec(), HOUR)

    assert not created and again.job_id == job.job_id and again.attempt == 1  # one active job, requested too
    indexes = {i["name"] for i in sa.inspect(ledger.engine).get_indexes("cfdb_jobs")}
    assert "cfdb_jobs_one_active_per_key_v2" in indexes and "cfdb_jobs_one_active_per_key" not in indexes
    ledger.engine.dispose()


def test_a_job_that_replaces_a_failed_one_is_named_by_it(ledger):
    failed, _ = ledger.request(_spec(), HOUR)
    ledger.finish(failed.job_id, succeeded=False, error="connection reset")

    new, created = ledger.request(_spec(), HOUR)

    assert created and ledger.job(failed.job_id).superseded_by == new.job_id
    assert ledger.job(new.job_id).superseded_by is None


def test_progress_is_written_by_the_current_attempt_only_and_cleared_on_requeue(ledger):
    job, _ = ledger.request(_spec(), HOUR)

    assert ledger.set_progress(job.job_id, 1, "fetching: 1.0 MB of 2.0 MB" + "x" * 300)
    assert ledger.job(job.job_id).progress == ("fetching: 1.0 MB of 2.0 MB" + "x" * 300)[:256]
    assert not ledger.set_progress(job.job_id, 2, "a later attempt")  # no such attempt yet

    ledger.requeue(job.job_id, 1, error="worker lost")
    assert ledger.job(job.job_id).progress is None
    assert not ledger.set_progress(job.job_id, 1, "a late write of attempt 1")
    assert ledger.set_progress(job.job_id, 2, "sorting")

    ledger.finish(job.job_id, succeeded=True)
    assert not ledger.set_progress(job.job_id, 2, "after the end")


def test_a_later_build_clears_the_remembered_failure_of_a_key(ledger):
    job, _ = ledger.request(_spec(), HOUR)
    ledger.finish(job.job_id, succeeded=False, error="checksum mismatch", permanent=True)

    assert ledger.clear_failure(KEY)

    cleared = ledger.job(job.job_id)
    assert (cleared.state, cleared.error, cleared.error_kind) == ("succeeded", None, None)
    assert not ledger.clear_failure(KEY)  # nothing left to clear
    _, created = ledger.request(_spec(), HOUR)
    assert created  # not answered with the old failure


def test_clear_failure_never_touches_an_active_job_or_an_older_row(ledger):
    old, _ = ledger.request(_spec(), HOUR)
    ledger.finish(old.job_id, succeeded=False, error="transient")
    active, _ = ledger.request(_spec(), HOUR)

    assert not ledger.clear_failure(KEY)
    assert (ledger.job(old.job_id).state, ledger.job(active.job_id).state) == ("failed", "queued")
