"""Sort memory from the machine or the task (cfdb_assets/memory.py), read from fake /proc and cgroup
trees: the real files' formats, the limits this machine cannot take on."""

import pytest

from cfdb_assets.memory import available_memory, sort_memory_per_thread, to_bytes
from cfdb_assets.sources import ToolOptions

GIB = 1024**3


def _proc(tmp_path, available_kib):
    proc = tmp_path / "proc"
    proc.mkdir(exist_ok=True)
    (proc / "meminfo").write_text(f"MemTotal:       32000000 kB\nMemFree:  100 kB\nMemAvailable:   {available_kib} kB\n")
    return proc


def test_the_machine_without_a_cgroup_limit(tmp_path):
    cgroup = tmp_path / "cg"
    cgroup.mkdir()
    (cgroup / "memory.max").write_text("max\n")
    (cgroup / "memory.current").write_text("123456\n")
    assert available_memory(_proc(tmp_path, 8 * 1024 * 1024), cgroup) == 8 * GIB


def test_a_task_limit_below_the_machine_wins(tmp_path):
    # Fargate: the task's cgroup says 4 GiB while the host has far more.
    cgroup = tmp_path / "cg"
    cgroup.mkdir()
    (cgroup / "memory.max").write_text(f"{4 * GIB}\n")
    (cgroup / "memory.current").write_text(f"{GIB}\n")
    assert available_memory(_proc(tmp_path, 30 * 1024 * 1024), cgroup) == 3 * GIB


def test_cgroup_v1_limit(tmp_path):
    cgroup = tmp_path / "cg"
    (cgroup / "memory").mkdir(parents=True)
    (cgroup / "memory" / "memory.limit_in_bytes").write_text(f"{2 * GIB}\n")
    (cgroup / "memory" / "memory.usage_in_bytes").write_text("0\n")
    assert available_memory(_proc(tmp_path, 30 * 1024 * 1024), cgroup) == 2 * GIB
    (cgroup / "memory" / "memory.limit_in_bytes").write_text("9223372036854771712\n")  # v1's "no limit"
    assert available_memory(_proc(tmp_path, 1024 * 1024), cgroup) == GIB


def test_nothing_to_go_by(tmp_path):
    assert available_memory(tmp_path / "none", tmp_path / "none") is None


@pytest.mark.parametrize(("setting", "threads", "available", "expected"), [
    ("auto", 2, 8 * GIB, "2048M"),  # half, split between the threads
    ("auto", 2, 40 * GIB, "4096M"),  # capped: more only delays the first output
    ("auto", 8, 1 * GIB, "256M"),  # floored: a sort needs a useful buffer
    ("AUTO", 1, 3 * GIB, "1536M"),
    ("768M", 2, 40 * GIB, "768M"),  # an explicit setting is an override
])
def test_per_thread_memory(setting, threads, available, expected):
    assert sort_memory_per_thread(setting, threads, available) == expected


def test_gnu_sort_gets_the_threads_total():
    assert ToolOptions(threads=2, sort_memory="768M", compression_level=4).sort_buffer == "1572864K"
    assert to_bytes("2G") == 2 * GIB and to_bytes("512k") == 512 * 1024 and to_bytes("1000") == 1000
