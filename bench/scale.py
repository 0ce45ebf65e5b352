"""A burst of N cold requests through the real service (`scripts/run.sh`): how fast the on-demand
sensor turns queued jobs into runs, and how far the ledger lags behind Dagster.

A catalog of N tiny BED files (20 records each, so a run is mostly Dagster's own overhead) is served
from a temporary data directory; N GETs /data/... are fired at once (bounded concurrency, loopback
only) and each answers 202 with a new job. The ledger (read-only SQLite) and the Dagster instance
(read-only) are then polled until every job is `requested`, every job's run exists, and (unless
--no-runs) every job ended or the time limit passed. Prints a table:

- the 202 latency of the burst (p50/p99/max);
- time (from the first GET) until every job is `requested` in the ledger, and until every job's
  Dagster run was created (the sensor marks a job requested before the daemon creates its run);
- per-job lags: created → requested (sensor), requested → run created (daemon), run end → ledger
  finished_at (the status lag; the issue's target is under 10 s);
- completion: how many jobs ended, and when the last did;
- where a tick's time goes: on_demand tick durations and runs per tick (tick history), the gaps
  between run-status sensor ticks (starvation), and the daemon log's per-phase timings;
- CPU seconds per run created, by process (daemon, code server, API, webserver; /proc, less the
  idle rate measured for 10 s before the burst), and each one's share of a core meanwhile;
- the machine's load average while it ran (other work shares the cores).

--no-runs measures the request → requested → run-created path alone: the instance's
QueuedRunCoordinator gets max_concurrent_runs: 0 (a copy of dagster.yaml in the temporary
DAGSTER_HOME; this Dagster has no CLI to pause the run queue), so runs are created and stay QUEUED.

    .venv/bin/python bench/scale.py                 # 2,000 jobs, runs launched (2 at a time)
    .venv/bin/python bench/scale.py --n 200         # a quick one
    .venv/bin/python bench/scale.py --no-runs       # the request path alone
    .venv/bin/python bench/scale.py --n 400 --no-runs --py-spy /tmp/pyspy/bin/py-spy   # + where it goes

--dagster-postgres ADMIN_URL puts the Dagster instance's storage in a throwaway database on that
server (the production layout, deploy/dagster.yaml) instead of the embedded SQLite files; the ledger
stays SQLite.

--py-spy samples the daemon (wall time of the run-submission and tick threads) and its code server
(CPU) for --profile-seconds, from --profile-delay seconds after the first GET (bench/profile_stacks.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import itertools
import os
import re
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import sqlalchemy as sa  # noqa: E402

from cfdb_assets.names import ATTEMPT_TAG, JOB_ID_TAG  # noqa: E402
from resources.ledger_schema import jobs as jobs_table  # noqa: E402
from synthetic.demo import document  # noqa: E402
from synthetic.small import bed_text  # noqa: E402
from tests.e2e.service import Service  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import profile_stacks  # noqa: E402

TERMINAL = ("succeeded", "failed")
STATUS_SENSORS = ("jobs_succeeded", "jobs_failed", "jobs_canceled")


# ---------------------------------------------------------------------------------------------- setup


def write_catalog(root: Path, n: int) -> Path:
    """N distinct tiny BED files (distinct seeds: distinct md5s, so distinct cache keys)."""
    sources = root / "sources"
    sources.mkdir(parents=True)
    docs = []
    for i in range(n):
        path = sources / f"SCALE{i:06d}.bed"
        path.write_text(bed_text(100_000 + i, n=20))
        docs.append(document("encode", f"SCALE{i:06d}", path, ("format:3003", "BED")))
    catalog = root / "catalog.jsonl"
    catalog.write_text("".join(json.dumps(d) + "\n" for d in docs))
    return catalog


def write_instance(dagster_home: Path, no_runs: bool, postgres_url: str | None = None) -> None:
    """The repository's dagster.yaml (run.sh keeps a DAGSTER_HOME's own copy); with no_runs, a run
    queue that never launches anything; with postgres_url, Dagster's storage in that database
    instead of SQLite files (as in production, deploy/dagster.yaml)."""
    text = (ROOT / "dagster.yaml").read_text()
    if no_runs:
        text, count = re.subn(r"max_concurrent_runs:\s*\d+", "max_concurrent_runs: 0", text)
        if count != 1:
            raise SystemExit("dagster.yaml has no run_coordinator max_concurrent_runs to set to 0")
    if postgres_url:
        text += f"\nstorage:\n  postgres:\n    postgres_url: {json.dumps(postgres_url)}\n"
    dagster_home.mkdir(parents=True, exist_ok=True)
    (dagster_home / "dagster.yaml").write_text(text)


@contextlib.contextmanager
def throwaway_database(admin_url: str):
    """A fresh database on the server of ``admin_url`` (as tests/conftest.py does), dropped after."""
    url = sa.make_url(admin_url)
    if url.drivername == "postgresql":  # SQLAlchemy 2.1 would pick psycopg 3; the project ships psycopg2
        url = url.set(drivername="postgresql+psycopg2")
    name = f"cfdb_scale_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:  # FORCE: a killed worker may leave a connection behind
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def ledger_engine(data_dir: Path) -> sa.Engine:
    """The service's SQLite ledger, opened read-only."""
    path = data_dir / "ledger.db"
    return sa.create_engine(f"sqlite:///file:{path}?mode=ro&uri=true", connect_args={"timeout": 30})


def _utc(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


# --------------------------------------------------------------------------------------------- burst


@dataclass
class Burst:
    started: float = 0.0  # wall clock of the first GET
    ended: float = 0.0
    latencies: list[float] = field(default_factory=list)  # of 202 answers
    statuses: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)


async def _burst(url: str, ids: list[str], concurrency: int, timeout: float) -> Burst:
    result = Burst()
    gate = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:

        async def one(local_id: str) -> None:
            async with gate:
                began = time.perf_counter()
                try:
                    response = await client.get(f"/data/encode/{local_id}")
                except httpx.HTTPError as exc:
                    result.errors[type(exc).__name__] += 1
                    return
                elapsed = time.perf_counter() - began
                result.statuses[response.status_code] += 1
                if response.status_code == 202:
                    result.latencies.append(elapsed)

        result.started = time.time()
        try:
            await asyncio.wait_for(asyncio.gather(*(one(i) for i in ids)), timeout)
        except TimeoutError:
            result.errors["burst time limit"] += 1
        result.ended = time.time()
    return result


# -------------------------------------------------------------------------------------------- polling


@dataclass
class Sample:
    t: float  # wall clock
    states: dict[str, int]
    runs: int
    runs_done: int
    load: float
    cpu: dict[str, float]  # CPU seconds so far of the service's processes, by role


class Poller(threading.Thread):
    """Samples the ledger's state counts and the instance's run counts once a second."""

    def __init__(self, engine: sa.Engine, instance, n: int, dagster_home: Path, period: float = 1.0):
        super().__init__(daemon=True)
        self.engine, self.instance, self.n, self.period = engine, instance, n, period
        self.dagster_home = dagster_home
        self.pids = profile_stacks.service_processes(dagster_home, every=True)
        self.cpu_total: Counter = Counter()  # CPU seconds by role, summed over restarted processes
        self.cpu_last: dict[tuple[str, int], float] = {}
        self.samples: list[Sample] = []
        self.stop_event = threading.Event()
        self.failures: Counter = Counter()

    def run(self) -> None:
        import dagster as dg

        done = [dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED]
        runs = runs_done = 0
        tick = 0
        while not self.stop_event.is_set():
            began = time.monotonic()
            try:
                with self.engine.connect() as conn:
                    rows = conn.execute(
                        sa.select(jobs_table.c.state, sa.func.count()).group_by(jobs_table.c.state)
                    ).all()
                states = {state: count for state, count in rows}
            except sa.exc.SQLAlchemyError as exc:
                self.failures[f"ledger: {type(exc).__name__}"] += 1
                states = self.samples[-1].states if self.samples else {}
            if tick % 2 == 0:  # the instance every other second
                try:
                    runs = self.instance.get_runs_count()
                    runs_done = self.instance.get_runs_count(dg.RunsFilter(statuses=done))
                except Exception as exc:  # noqa: BLE001 (a locked SQLite read: try again next time)
                    self.failures[f"instance: {type(exc).__name__}"] += 1
            self.samples.append(Sample(time.time(), states, runs, runs_done, os.getloadavg()[0], self._cpu()))
            tick += 1
            self.stop_event.wait(max(0.0, self.period - (time.monotonic() - began)))

    def _cpu(self) -> dict[str, float]:
        """CPU seconds so far by role; a process that went away (the daemon replaces a code server
        that missed its heartbeat) is looked up again and its successor counted from then on."""
        for role, pid in list(self.pids.items()):
            now = profile_stacks.cpu_seconds(pid)
            if now is None:
                self.pids = profile_stacks.service_processes(self.dagster_home, every=True)
                continue
            last = self.cpu_last.get((role, pid))
            self.cpu_total[role] += 0.0 if last is None else max(0.0, now - last)
            self.cpu_last[(role, pid)] = now
        return dict(self.cpu_total)

    def latest(self) -> Sample | None:
        return self.samples[-1] if self.samples else None

    def first(self, predicate) -> float | None:
        return next((s.t for s in self.samples if predicate(s)), None)


def requested_all(sample: Sample, n: int) -> bool:
    return sum(sample.states.values()) >= n and sample.states.get("queued", 0) == 0


def wait_until(poller: Poller, predicate, deadline: float, label: str, t0: float) -> bool:
    last_print = 0.0
    while time.time() < deadline:
        sample = poller.latest()
        if sample is not None and predicate(sample):
            return True
        if sample is not None and time.time() - last_print >= 15:
            last_print = time.time()
            states = " ".join(f"{k}={v}" for k, v in sorted(sample.states.items()))
            print(f"  [{sample.t - t0:6.0f} s] waiting for {label}: {states}; runs {sample.runs} "
                  f"({sample.runs_done} ended); load {sample.load:.1f}", flush=True)
        time.sleep(0.5)
    return False


# ------------------------------------------------------------------------------------------- analysis


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def dist(values: list[float]) -> str:
    if not values:
        return "n/a"
    return (f"p50 {pct(values, 0.5):.2f}  p99 {pct(values, 0.99):.2f}  max {max(values):.2f}  "
            f"(n={len(values)})")


def read_jobs(engine: sa.Engine) -> list:
    with engine.connect() as conn:
        return conn.execute(sa.select(jobs_table)).all()


def read_runs(instance) -> dict[tuple[str, str], object]:
    """The newest run record of each (job_id, attempt)."""
    newest: dict[tuple[str, str], object] = {}
    for record in instance.get_run_records():  # newest first
        tags = record.dagster_run.tags
        if JOB_ID_TAG in tags:
            newest.setdefault((tags[JOB_ID_TAG], tags.get(ATTEMPT_TAG, "1")), record)
    return newest


def sensor_ticks(instance, after: float) -> dict[str, list]:
    from dagster._core.scheduler.instigation import InstigatorType

    ticks = {}
    for state in instance.all_instigator_state(instigator_type=InstigatorType.SENSOR):
        ticks[state.instigator_name] = sorted(
            instance.get_ticks(state.instigator_origin_id, state.selector_id, after=float(after), limit=100_000),
            key=lambda tick: tick.timestamp,
        )
    return ticks


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)(?:[.,](\d+))? ([+-]\d{4}) - (\S+) - (\w+) - (.*)$")


def daemon_log_phases(log: Path, after: float) -> dict[str, list[float]]:
    """Per on_demand tick, from the daemon log: evaluation (tick start → the partitions added, i.e.
    the gRPC evaluation plus one has_dynamic_partition query per key), pre-run work (→ the first
    "Creating new run": resolving the requests and one run_key query per request), run creation
    (→ the last "Completed launch"), and seconds per run created."""
    phases: dict[str, list[float]] = {"evaluate": [], "before_runs": [], "create_runs": [], "per_run": []}
    if not log.exists():
        return phases
    events: list[tuple[float, str]] = []
    for line in log.read_text(errors="replace").splitlines():
        match = _LOG_LINE.match(_ANSI.sub("", line))
        if not match:
            continue
        stamp, frac, zone, _logger, _level, message = match.groups()
        when = datetime.strptime(f"{stamp} {zone}", "%Y-%m-%d %H:%M:%S %z").timestamp()
        if frac:
            when += float(f"0.{frac}")
        if when >= after:
            events.append((when, message))
    tick: dict | None = None

    def close(t: dict | None) -> None:
        if not t or not t["creating"]:
            return
        if t["added"] is not None:
            phases["evaluate"].append(t["added"] - t["start"])
            phases["before_runs"].append(t["creating"][0] - t["added"])
        if t["launched"]:
            span = t["launched"][-1] - t["creating"][0]
            phases["create_runs"].append(span)
            phases["per_run"].append(span / len(t["launched"]))

    for when, message in events:
        if message.startswith("Checking for new runs for sensor: on_demand"):
            close(tick)
            tick = {"start": when, "added": None, "creating": [], "launched": []}
        elif tick is None:
            continue
        elif message.startswith("Added partition keys") or message.startswith("Skipping addition of partition"):
            tick["added"] = tick["added"] or when
        elif message.startswith("Creating new run for on_demand"):
            tick["creating"].append(when)
        elif message.startswith("Completed launch of run") and message.endswith("for on_demand"):
            tick["launched"].append(when)
    close(tick)
    return phases


def cpu_per_run(samples: list[Sample], t0: float, t1: float) -> str | None:
    """CPU seconds per run created, by process, from the first GET to the last run created, less
    the idle rate measured before the burst; and each process's share of one core meanwhile."""
    before = [s for s in samples if s.t < t0]
    during = [s for s in samples if t0 <= s.t <= t1 + 1]
    if len(before) < 2 or len(during) < 2:
        return None
    runs = during[-1].runs - during[0].runs
    if runs <= 0:
        return None
    parts = []
    for role in ("daemon", "code_server", "api", "webserver"):
        if role not in during[-1].cpu or role not in before[0].cpu:
            continue
        idle_rate = (before[-1].cpu[role] - before[0].cpu[role]) / max(1e-9, before[-1].t - before[0].t)
        wall = during[-1].t - during[0].t
        used = during[-1].cpu[role] - during[0].cpu[role]
        parts.append(f"{role} {(used - idle_rate * wall) / runs:.2f} ({used / wall:.0%} of a core)")
    return f"{', '.join(parts)}; {runs} runs"


def fmt_s(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} s"


def print_profile(folder: Path) -> None:
    sections = (
        ("daemon: sensor_submit_worker threads, creating runs (wall time)", folder / "daemon.txt",
         profile_stacks.DAEMON_SUBMIT, "sensor_submit_worker", "submit_run_request ("),
        ("daemon: sensor tick threads, all sensors (wall time)", folder / "daemon.txt",
         profile_stacks.DAEMON_TICK, "sensor_daemon_worker", "_process_tick_generator ("),
        ("code server (CPU)", folder / "code_server.txt", profile_stacks.CODE_SERVER, None, None),
    )
    for title, path, rules, prefix, needle in sections:
        seconds, rows = profile_stacks.summarize(path, rules, prefix, needle)
        print(f"\n{title}: {seconds:.1f} thread-seconds sampled")
        for label, secs, share in rows:
            print(f"  {share:6.1%} {secs:8.1f} s  {label}")
    print("\ndaemon CPU by thread (s):")
    for name, secs in profile_stacks.by_thread(folder / "daemon_cpu.txt")[:10]:
        print(f"  {secs:8.1f} s  {name}")
    print("\ndaemon CPU, top functions (inclusive s):")
    for frame, secs in profile_stacks.top_frames(folder / "daemon_cpu.txt", n=25):
        print(f"  {secs:8.1f} s  {frame[:120]}")
    print("\ncode server, top functions (inclusive CPU s):")
    for frame, secs in profile_stacks.top_frames(folder / "code_server.txt", n=15):
        print(f"  {secs:8.1f} s  {frame[:120]}")
    print("\ndaemon submit workers, top functions (inclusive wall s):")
    for frame, secs in profile_stacks.top_frames(folder / "daemon.txt", "sensor_submit_worker",
                                                 "submit_run_request (", n=20):
        print(f"  {secs:8.1f} s  {frame[:120]}")


# ----------------------------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="files in the catalog, and GETs in the burst")
    parser.add_argument("--no-runs", action="store_true",
                        help="never launch runs (max_concurrent_runs: 0): measure the request path alone")
    parser.add_argument("--concurrency", type=int, default=64, help="GETs in flight at once")
    parser.add_argument("--burst-timeout", type=float, default=300, help="seconds for the whole burst")
    parser.add_argument("--requested-timeout", type=float, default=600,
                        help="seconds from the first GET for every job to be requested and have its run")
    parser.add_argument("--complete-timeout", type=float, default=900,
                        help="seconds from the first GET for every job to end")
    parser.add_argument("--keep", action="store_true", help="keep the data directory (logs, ledger, instance)")
    parser.add_argument("--json", type=Path, help="also write the numbers to this file")
    parser.add_argument("--dagster-postgres", metavar="ADMIN_URL",
                        help="Dagster's storage in a throwaway database on this Postgres server "
                        "(e.g. postgresql://postgres@127.0.0.1:5432/test, the test server) instead of SQLite")
    parser.add_argument("--py-spy", help="a py-spy executable: profile the daemon and its code server")
    parser.add_argument("--profile-delay", type=float, default=20, help="seconds after the first GET")
    parser.add_argument("--profile-seconds", type=int, default=90)
    args = parser.parse_args()
    # Stop the service on the way out however this ends (a background job ignores SIGINT).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGINT, signal.default_int_handler)

    with contextlib.ExitStack() as stack:
        postgres = stack.enter_context(throwaway_database(args.dagster_postgres)) if args.dagster_postgres else None
        return run(args, postgres)


def run(args: argparse.Namespace, postgres: str | None) -> int:
    n = args.n
    root = Path(tempfile.mkdtemp(prefix="cfdb-scale-"))
    print(f"bench/scale.py: N={n}, {'no runs (request path only)' if args.no_runs else 'runs launched'}, "
          f"Dagster storage {'Postgres' if postgres else 'SQLite'}, "
          f"data in {root}; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} on "
          f"{os.cpu_count()} cores", flush=True)
    began = time.monotonic()
    catalog = write_catalog(root / "catalog", n)
    print(f"  catalog of {n} BED files written in {time.monotonic() - began:.1f} s", flush=True)
    service = Service(root, {
        "CFDB_CATALOG": str(catalog),
        # The admission ceiling (default 1024 active jobs) would answer 429 to most of the burst.
        "CFDB_MAX_ACTIVE_JOBS": str(max(1024, 2 * n)),
    })
    write_instance(service.dagster_home, args.no_runs, postgres)
    results: dict = {"n": n, "no_runs": args.no_runs, "dagster_storage": "postgres" if postgres else "sqlite",
                     "cores": os.cpu_count(), "load_before": os.getloadavg()}
    poller = None
    try:
        service.start(timeout=180)
        import dagster as dg

        instance = dg.DagsterInstance.from_config(str(service.dagster_home))
        # Wait for the sensor's first tick, so the code server's first load is not in the figures.
        first_tick = time.monotonic()
        while time.monotonic() - first_tick < 120:
            ticks = sensor_ticks(instance, after=0.0).get("on_demand", [])
            if ticks and ticks[-1].end_timestamp:
                break
            time.sleep(1)
        print(f"  service up; on_demand ticking (waited {time.monotonic() - first_tick:.0f} s)", flush=True)

        engine = ledger_engine(service.data_dir)
        poller = Poller(engine, instance, n, service.dagster_home)
        poller.start()
        time.sleep(10)  # a baseline: the services' CPU while idle (sensors ticking, nothing to do)
        ids = [f"SCALE{i:06d}" for i in range(n)]
        recorders: list = []
        if args.py_spy:
            pids = profile_stacks.service_processes(service.dagster_home)
            print(f"  profiling {pids} for {args.profile_seconds} s from +{args.profile_delay:.0f} s", flush=True)
            (root / "profile").mkdir(exist_ok=True)

            def start_profiling() -> None:
                for role, pid in pids.items():
                    recorders.append(profile_stacks.record(
                        args.py_spy, pid, root / "profile" / f"{role}.txt", args.profile_seconds,
                        idle=role == "daemon"))
                if "daemon" in pids:  # and its CPU, by thread
                    recorders.append(profile_stacks.record(
                        args.py_spy, pids["daemon"], root / "profile" / "daemon_cpu.txt", args.profile_seconds,
                        idle=False))

            timer = threading.Timer(args.profile_delay, start_profiling)
            timer.daemon = True
            timer.start()
        burst = asyncio.run(_burst(service.url, ids, args.concurrency, args.burst_timeout))
        t0 = burst.started
        print(f"  burst of {n} GETs done in {burst.ended - t0:.1f} s: {dict(burst.statuses)} "
              f"{dict(burst.errors) or ''}", flush=True)

        ok = wait_until(poller, lambda s: requested_all(s, n), t0 + args.requested_timeout, "every job requested", t0)
        ok = ok and wait_until(poller, lambda s: s.runs >= n, t0 + args.requested_timeout, "every run created", t0)
        if not args.no_runs:
            wait_until(poller, lambda s: sum(s.states.get(k, 0) for k in TERMINAL) >= n,
                       t0 + args.complete_timeout, "every job ended", t0)
        poller.stop_event.set()
        poller.join()
        for recorder in recorders:
            recorder.wait(timeout=args.profile_seconds + 60)

        # ---- the numbers
        rows = read_jobs(engine)
        runs = read_runs(instance)
        samples = poller.samples
        states = Counter(row.state for row in rows)
        requested_lag, created_lag, status_lag, run_time, queue_time = [], [], [], [], []
        run_created_at = []
        for row in rows:
            record = runs.get((row.job_id, str(row.attempt)))
            requested_at, created_at, finished_at = _utc(row.requested_at), _utc(row.created_at), _utc(row.finished_at)
            if requested_at:
                requested_lag.append((requested_at - created_at).total_seconds())
            if record is None:
                continue
            run_created_at.append(record.create_timestamp.timestamp())
            if requested_at:
                created_lag.append(record.create_timestamp.timestamp() - requested_at.timestamp())
            if record.start_time and record.end_time:
                run_time.append(record.end_time - record.start_time)
            if record.start_time:
                queue_time.append(record.start_time - record.create_timestamp.timestamp())
            if finished_at and record.end_time and row.state in TERMINAL:
                status_lag.append(finished_at.timestamp() - record.end_time)
        all_requested = poller.first(lambda s: requested_all(s, n))
        requeued = any(s.states.get("queued", 0) > 0 for s in samples if all_requested and s.t > all_requested)
        all_runs = max(run_created_at) if len(run_created_at) >= n else None
        ended = [_utc(r.finished_at).timestamp() for r in rows if r.state in TERMINAL and r.finished_at]
        all_ended = max(ended) if len(ended) >= n else None
        loads = [s.load for s in samples]

        ticks = sensor_ticks(instance, after=t0 - 5)
        od = [t for t in ticks.get("on_demand", []) if t.end_timestamp]
        od_busy = [t for t in od if t.run_ids]
        od_durations = [t.end_timestamp - t.timestamp for t in od_busy]
        gaps = {}
        for name in STATUS_SENSORS:
            starts = [t.timestamp for t in ticks.get(name, [])]
            gaps[name] = [b - a for a, b in itertools.pairwise(starts)]
        window_end = all_ended or (samples[-1].t if samples else time.time())
        phases = daemon_log_phases(service.data_dir / "logs" / "daemon.log", after=t0 - 5)

        w = 46
        print()
        print(f"{'metric':<{w}} value")
        print(f"{'-' * w} {'-' * 50}")

        def line(name: str, value: str) -> None:
            print(f"{name:<{w}} {value}", flush=True)

        line("jobs (files requested)", f"{n}; GET answers {dict(sorted(burst.statuses.items()))}"
             + (f", errors {dict(burst.errors)}" if burst.errors else ""))
        line("burst: 202 latency (s)", dist(burst.latencies))
        line("burst: duration", fmt_s(burst.ended - t0))
        line("all jobs requested (ledger), from first GET",
             fmt_s(all_requested - t0 if all_requested else None)
             + ("" if all_requested else f"  ({sum(v for k, v in states.items() if k != 'queued')}/{n} by the limit)")
             + ("  (then some went back to queued)" if requeued else ""))
        line("all runs created (Dagster), from first GET",
             fmt_s(all_runs - t0 if all_runs else None) + ("" if all_runs else f"  ({len(run_created_at)}/{n})"))
        line("per job: created -> requested (s)", dist(requested_lag))
        cpu = cpu_per_run(samples, t0, all_runs or samples[-1].t)
        if cpu:
            line("CPU while runs were created (s per run)", cpu)
        line("per job: requested -> run created (s)", dist(created_lag))
        if not args.no_runs:
            line("per job: run created -> started (s)", dist(queue_time))
            line("per run: started -> ended (s)", dist(run_time))
            line("status lag: run end -> ledger finished (s)", dist(status_lag))
            line("all jobs ended, from first GET",
                 fmt_s(all_ended - t0 if all_ended else None)
                 + ("" if all_ended else f"  ({len(ended)}/{n} by the {args.complete_timeout:.0f} s limit)"))
            span = (window_end - t0) if ended else None
            line("completion rate", f"{len(ended) / span * 60:.1f} jobs/min" if span else "n/a")
        line("final ledger states", dict(sorted(states.items())).__repr__())
        line("on_demand ticks with runs", f"{len(od_busy)} (of {len(od)} in the window); runs per tick "
             f"{dist([float(len(t.run_ids)) for t in od_busy])}")
        line("on_demand busy tick duration (s)", dist(od_durations))
        if od_durations:
            line("run creation rate (runs / busy tick second)",
                 f"{sum(len(t.run_ids) for t in od_busy) / sum(od_durations):.2f}")
        line("daemon log: evaluate + add partitions (s)", dist(phases["evaluate"]))
        line("daemon log: run_key lookups before runs (s)", dist(phases["before_runs"]))
        line("daemon log: create + submit runs (s)", dist(phases["create_runs"]))
        line("daemon log: s per run (create + submit)", dist(phases["per_run"]))
        for name in STATUS_SENSORS:
            line(f"{name}: gap between ticks (s)", dist(gaps[name]))
        for i, t in enumerate(od_busy):
            line(f"  on_demand busy tick {i + 1}", f"start +{t.timestamp - t0:.0f} s, "
                 f"{t.end_timestamp - t.timestamp:.0f} s long, {len(t.run_ids)} runs")
        line("load average (1 min) during", f"start {loads[0]:.2f}, mean {statistics.mean(loads):.2f}, "
             f"max {max(loads):.2f}, end {loads[-1]:.2f}" if loads else "n/a")
        if poller.failures:
            line("poll failures", dict(poller.failures).__repr__())
        if args.py_spy:
            print_profile(root / "profile")
        results.update({
            "burst_statuses": dict(burst.statuses), "burst_errors": dict(burst.errors),
            "latency_202_p50": pct(burst.latencies, 0.5), "latency_202_p99": pct(burst.latencies, 0.99),
            "all_requested_s": all_requested - t0 if all_requested else None,
            "all_runs_created_s": all_runs - t0 if all_runs else None,
            "all_ended_s": all_ended - t0 if all_ended else None, "ended": len(ended),
            "status_lag_p50": pct(status_lag, 0.5), "status_lag_p99": pct(status_lag, 0.99),
            "status_lag_max": max(status_lag) if status_lag else None,
            "on_demand_tick_durations": od_durations, "runs_per_tick": [len(t.run_ids) for t in od_busy],
            "daemon_phases": phases, "status_sensor_gaps_max": {k: max(v) if v else None for k, v in gaps.items()},
            "states": dict(states), "load": {"start": loads[0] if loads else None,
                                             "mean": statistics.mean(loads) if loads else None,
                                             "max": max(loads) if loads else None},
            "cpu_per_run": cpu,
            "timeline": [(round(s.t - t0, 1), s.states, s.runs, s.runs_done, s.load, s.cpu) for s in samples],
        })
        if args.json:
            args.json.write_text(json.dumps(results, indent=1, default=str))
        return 0
    finally:
        if poller is not None:
            poller.stop_event.set()
        service.stop()
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
