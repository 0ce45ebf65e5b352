"""py-spy helpers for bench/scale.py --py-spy: find the service's Dagster daemon and its code server,
sample them while the burst is being turned into runs, and say where the time goes.

py-spy is not a project dependency: install it anywhere (``pip install --target /tmp/pyspy py-spy``)
and pass its executable.
"""

from __future__ import annotations

import os
import subprocess
from collections import Counter
from pathlib import Path

__all__ = [
    "CODE_SERVER",
    "DAEMON_SUBMIT",
    "DAEMON_TICK",
    "by_thread",
    "cpu_seconds",
    "record",
    "service_processes",
    "summarize",
    "top_frames",
]


def _environ(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    return dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _ppid(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return 0


def service_processes(dagster_home: Path, every: bool = False) -> dict[str, int]:
    """The pids of the daemon and of the code server it started, for this DAGSTER_HOME (``every``:
    the API and the webserver too)."""
    found: dict[str, int] = {}
    pids = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]
    roles = {"dagster-daemon run": "daemon", "uvicorn serve.asgi:app": "api", "dagster-webserver": "webserver"}
    for pid in pids:
        cmdline = _cmdline(pid)
        for needle, role in roles.items():
            if needle in cmdline and (every or role == "daemon") and _environ(pid).get("DAGSTER_HOME") == str(
                dagster_home
            ):
                found[role] = pid
    if "daemon" in found:
        for pid in pids:
            if _ppid(pid) == found["daemon"] and " api grpc" in _cmdline(pid):
                found["code_server"] = pid
    return found


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process so far (None once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def record(py_spy: str, pid: int, out: Path, duration: int, idle: bool) -> subprocess.Popen:
    """Sample ``pid`` at 50 Hz for ``duration`` s into ``out`` (py-spy's raw, collapsed stacks)."""
    argv = [py_spy, "record", "--pid", str(pid), "--duration", str(duration), "--rate", "50", "--format", "raw",
            "--threads", "--nonblocking", "--output", str(out)]
    if idle:
        argv.append("--idle")
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)


def _stacks(path: Path, thread_prefix: str | None, must_contain: str | None):
    if not path.exists():
        return
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        thread, _, frames = stack.partition(";")
        name = thread.split(": ", 1)[-1]
        if thread_prefix and not name.startswith(thread_prefix):
            continue
        if must_contain and must_contain not in frames:
            continue
        yield frames, int(count)


# (label, test on the frames string): the first that matches names a sample.
def _innermost_is(func: str, module: str):
    """The sample's innermost Python frame is ``func`` in ``module`` (py-spy shows a C-level wait, such
    as acquiring a lock, as the Python line that called it)."""
    def test(frames: str) -> bool:
        last = frames.rsplit(";", 1)[-1]
        name = last.split(" (", 1)[0]
        return (name == func or name.endswith(f".{func}")) and module in last
    return test


DAEMON_SUBMIT = (  # the sensor's run submission threads (wall time, --idle)
    ("event log: waiting for the storage's process-wide lock (SqliteEventLogStorage._db_lock)",
     _innermost_is("_connect", "sqlite_event_log.py")),
    ("event log: new per-run SQLite DB (create tables, alembic stamp)", lambda f: "_initdb (" in f),
    ("execution plan: gRPC to the code server", lambda f: "get_execution_plan (" in f),
    ("create_run: job / plan snapshots", lambda f: "_ensure_persisted_" in f),
    ("event writes (planned + enqueued events)", lambda f: "store_event (" in f),
    ("create_run: other (runs.db rows)", lambda f: "create_run (" in f),
    ("submit_run: other", lambda f: "submit_run (" in f),
    ("workspace: get_job", lambda f: "get_job (" in f),
)
DAEMON_TICK = (  # the sensor tick's own thread (wall time, --idle)
    ("sensor evaluation: gRPC to the code server", lambda f: "get_sensor_execution_data (" in f),
    ("dynamic partitions: one query per key + add", lambda f: "_handle_dynamic_partitions_requests (" in f),
    ("run_key lookups: one query per request", lambda f: "fetch_existing_runs (" in f),
    ("resolving requests", lambda f: "_resolve_run_requests (" in f),
    ("waiting for the submit workers", lambda f: "_submit_run_requests (" in f),
    ("tick bookkeeping", lambda f: "update_state (" in f or "_write" in f),
)
CODE_SERVER = (  # on CPU only
    ("execution plan for a run", lambda f: "ExecutionPlan" in f or "execution_plan" in f),
    ("on_demand sensor body: ledger", lambda f: "resources/ledger.py" in f and "on_demand (" in f),
    ("on_demand sensor body: reconcile (Dagster run lookups)", lambda f: "_reconcile (" in f),
    ("on_demand sensor body: other", lambda f: "on_demand (" in f),
    ("run-status sensors", lambda f: "_settle_run (" in f or "run_status_sensor" in f),
    ("sensor evaluation: other", lambda f: "sensor" in f.lower()),
    ("gRPC / serialization", lambda f: "grpc" in f.lower() or "serdes" in f),
)


def summarize(path: Path, rules, thread_prefix: str | None = None, must_contain: str | None = None,
              rate: int = 50) -> tuple[float, list[tuple[str, float, float]]]:
    """(seconds sampled, [(label, seconds, share)]) over the matching samples."""
    totals: Counter = Counter()
    for frames, count in _stacks(path, thread_prefix, must_contain):
        label = next((name for name, test in rules if test(frames)), "other")
        totals[label] += count
    whole = sum(totals.values())
    return whole / rate, [(label, c / rate, c / whole) for label, c in totals.most_common()] if whole else []


def by_thread(path: Path, rate: int = 50) -> list[tuple[str, float]]:
    """Seconds sampled per thread name (numbered workers pooled), most first."""
    totals: Counter = Counter()
    if path.exists():
        for line in path.read_text(errors="replace").splitlines():
            stack, _, count = line.rpartition(" ")
            if count.isdigit():
                name = stack.partition(";")[0].split(": ", 1)[-1].rstrip("0123456789_")
                totals[name or "?"] += int(count)
    return [(name, c / rate) for name, c in totals.most_common()]


def top_frames(path: Path, thread_prefix: str | None = None, must_contain: str | None = None, n: int = 12,
               rate: int = 50) -> list[tuple[str, float]]:
    """The functions with the most inclusive time (seconds) in the matching samples."""
    inclusive: Counter = Counter()
    for frames, count in _stacks(path, thread_prefix, must_contain):
        for frame in set(frames.split(";")):
            inclusive[frame] += count
    return [(frame, c / rate) for frame, c in inclusive.most_common(n)]
