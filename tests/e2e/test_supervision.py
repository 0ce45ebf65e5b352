"""`scripts/run.sh` supervises its services: a crashed API is restarted (with a backoff) while the
daemon keeps running, and SIGTERM to run.sh still stops every process group it started."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from synthetic.demo import write_demo
from tests.e2e.service import Service, alive

SERVICES = {"daemon": "dagster-daemon", "webserver": "dagster-webserver", "api": "serve.asgi:app"}


def _stat(pid: int) -> tuple[int, int]:
    """(ppid, pgid) of a process, from /proc/<pid>/stat (the command name may hold spaces)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[1]), int(fields[2])


def _processes() -> dict[int, tuple[int, int]]:
    out = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                out[int(entry.name)] = _stat(int(entry.name))
    return out


def _services(run_pid: int) -> dict[str, int]:
    """The services run.sh started: its children that lead their own process group (setsid)."""
    found = {}
    for pid, (ppid, pgid) in _processes().items():
        if ppid != run_pid or pgid != pid:
            continue
        with contextlib.suppress(OSError):
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            for name, marker in SERVICES.items():
                if marker in cmdline:
                    found[name] = pid
    return found


def _live_members(groups: set[int]) -> dict[int, str]:
    """Live processes in these process groups, with their command lines."""
    out = {}
    for pid, (_, pgid) in _processes().items():
        if pgid in groups and alive(pid):
            with contextlib.suppress(OSError):
                out[pid] = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:200]
    return out


@pytest.fixture
def supervised(tmp_path):
    svc = Service(tmp_path, {"CFDB_CATALOG": str(write_demo(tmp_path / "catalog"))})
    svc.groups = set()  # every service group seen, so teardown can reap them whatever happens
    svc.start()
    yield svc
    svc.stop()
    for pgid in svc.groups:  # only groups run.sh (started by this test) made
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)


def _crash_api_and_wait_back(svc: Service, backoff_s: int, timeout: float = 20) -> int:
    """kill -9 the API; wait for run.sh to log the restart and a new API to answer /health."""
    old = _services(svc.proc.pid)["api"]
    os.kill(old, signal.SIGKILL)
    line = f"api (pid {old}) exited with status 137; restarting in {backoff_s} s"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        new = _services(svc.proc.pid).get("api")
        if new and new != old and line in svc.log.read_text():
            svc.groups.add(new)
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{svc.url}/health", timeout=2).status_code == 200:
                    return new
        time.sleep(0.2)
    raise AssertionError(f"the API did not come back in {timeout} s:\n{svc.log.read_text()[-3000:]}")


def test_crashed_api_is_restarted_alone_and_sigterm_stops_every_group(supervised):
    svc = supervised
    before = _services(svc.proc.pid)
    assert set(before) == set(SERVICES), before
    svc.groups.update(before.values())
    assert httpx.get(f"{svc.url}/health", timeout=5).status_code == 200

    first = _crash_api_and_wait_back(svc, backoff_s=1)
    # A second crash soon after waits longer: the backoff doubles.
    second = _crash_api_and_wait_back(svc, backoff_s=2)

    now = _services(svc.proc.pid)
    assert now == {**before, "api": second}, (before, now)  # daemon and webserver untouched
    assert alive(before["daemon"]) and alive(before["webserver"])
    api_log = (svc.data_dir / "logs" / "api.log").read_text()
    assert "run.sh: " in api_log and f"api (pid {before['api']}) exited with status 137" in api_log
    assert f"api (pid {first}) exited with status 137; restarting in 2 s" in api_log
    assert "daemon" not in svc.log.read_text().split("Press Ctrl-C to stop.")[1]

    # Every process in a service group now, children included (the daemon's code server, ...).
    members = set(_live_members(svc.groups))
    assert len(members) > len(now)

    svc.proc.send_signal(signal.SIGTERM)
    assert svc.proc.wait(timeout=30) == 0
    assert "Stopping..." in svc.log.read_text()
    # SIGKILL (after run.sh's grace) is not instantaneous: give the kernel a moment to finish them.
    deadline = time.monotonic() + 5
    while (left := _live_members(svc.groups)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left, left
    assert not [pid for pid in members if alive(pid)]
