"""The tool runner: pipefail, stderr tails without paths, and cancellation killing the whole group."""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

import pytest

from cfdb_assets.tools import ToolError, run, scrub


def _processes_running(needle: str) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if needle in cmdline:
            found.append(int(pid))
    return found


def test_a_failure_anywhere_in_a_pipeline_fails_the_step(tmp_path):
    with pytest.raises(ToolError, match="exit 1"):
        run("false | cat", tmp_path)


def test_tool_errors_carry_the_stderr_tail_with_paths_scrubbed(tmp_path):
    with pytest.raises(ToolError) as caught:
        run(f"ls {tmp_path}/no/such/file", tmp_path)
    message = str(caught.value)
    assert "No such file" in message and "<path>" in message
    assert str(tmp_path) not in message


def test_scrub_replaces_absolute_paths_only():
    assert scrub("cannot open /work/x/data.bam: ok 1/2") == "cannot open <path>: ok 1/2"


def test_interrupting_a_step_kills_its_whole_process_group(tmp_path):
    marker = f"{random.randrange(10**6)}.5"  # a sleep duration no other process uses
    previous = signal.signal(signal.SIGALRM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    signal.setitimer(signal.ITIMER_REAL, 0.5)
    try:
        with pytest.raises(KeyboardInterrupt):
            run(f"sleep {marker} | (sleep {marker}; cat)", tmp_path)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    deadline = time.monotonic() + 5
    while _processes_running(f"sleep {marker}") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _processes_running(f"sleep {marker}") == []


def test_a_worker_killed_outright_takes_its_tools_with_it(tmp_path):
    # A real worker process runs a pipeline, then is SIGKILLed (nothing of it can clean up): the
    # tools must not outlive it (bash's parent-death signal kills the pipeline's process group).
    import subprocess
    import sys

    marker = f"{random.randrange(10**6)}.25"
    worker = subprocess.Popen(
        [sys.executable, "-c", f"from cfdb_assets.tools import run; run('sleep {marker} | (sleep {marker}; cat)', "
                               f"__import__('pathlib').Path({str(tmp_path)!r}))"],
        cwd=Path(__file__).resolve().parents[2],
    )
    deadline = time.monotonic() + 30
    while len(_processes_running(f"sleep {marker}")) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(_processes_running(f"sleep {marker}")) >= 2, "the pipeline did not start"  # sleeps (+ bash)

    worker.kill()
    worker.wait()
    deadline = time.monotonic() + 5
    while _processes_running(f"sleep {marker}") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _processes_running(f"sleep {marker}") == []


@pytest.mark.parametrize(
    ("cmd", "exhausted"),
    [("echo 'sort: write failed: No space left on device' >&2; exit 2", True),
     ("kill -KILL $$", True),
     ("echo 'samtools sort: truncated file' >&2; exit 1", False)],
    ids=["disk-full", "killed", "bad-input"],
)
def test_a_tool_that_ran_out_of_resources_is_told_apart_from_bad_input(tmp_path, cmd, exhausted):
    with pytest.raises(ToolError) as caught:
        run(cmd, tmp_path)
    assert caught.value.resource_exhausted is exhausted


def test_scrub_keeps_urls_whole():
    text = "The upstream host a.org (https://a.org/x.bed) failed; see /srv/work/x.bed"
    assert scrub(text) == "The upstream host a.org (https://a.org/x.bed) failed; see <path>"


def test_scrub_hides_the_path_of_a_file_url():
    assert scrub("from file:///srv/x.bed failed") == "from file://<path> failed"
