"""How much memory a build's sort may use: by default a share of what this machine, or this task
(its cgroup limit, as on Fargate), has available when the run starts; ``CFDB_SORT_MEMORY`` (or a run's
``cfdb/sort_memory`` tag) overrides it. A fixed small buffer made every 1 GB sort spill to disk on
machines with memory to spare. Pure: imports neither Dagster nor Starlette."""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["AUTO", "available_memory", "sort_memory_per_thread", "to_bytes"]

AUTO = "auto"
MIB = 1 << 20
# The sorts get half of what is available: the rest is headroom for bgzip's and samtools' own
# buffers (samtools sort exceeds -m per thread somewhat), the worker and the page cache that keeps
# the spooled source and the output warm.
SORT_SHARE = 0.5
MIN_PER_THREAD = 256 * MIB
MAX_PER_THREAD = 4096 * MIB  # a 1 GB BAM sorts in memory with 2 threads; more only delays the first output
_UNLIMITED = 1 << 60  # cgroup v1 writes a huge number for "no limit"
_SIZE = re.compile(r"^(\d+)([KMG]?)$", re.IGNORECASE)


def to_bytes(size: str) -> int:
    """``512M``/``2G``/``1000000`` (sort's and samtools' syntax) in bytes."""
    number, unit = _SIZE.match(size.strip()).groups()
    return int(number) * {"": 1, "K": 1 << 10, "M": MIB, "G": 1 << 30}[unit.upper()]


def available_memory(proc: Path = Path("/proc"), cgroup: Path = Path("/sys/fs/cgroup")) -> int | None:
    """Bytes this process can still use: the kernel's MemAvailable, capped by the cgroup's limit less
    its usage (v2 ``memory.max``/``memory.current``, or v1's files). None when nothing says."""
    found = []
    try:
        meminfo = (proc / "meminfo").read_text()
        kib = re.search(r"^MemAvailable:\s+(\d+) kB", meminfo, re.MULTILINE)
        if kib:
            found.append(int(kib[1]) * 1024)
    except OSError:
        pass
    for limit_file, usage_file in (("memory.max", "memory.current"),
                                   ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes")):
        try:
            limit = (cgroup / limit_file).read_text().strip()
            usage = int((cgroup / usage_file).read_text().strip())
        except (OSError, ValueError):
            continue
        if limit.isdigit() and int(limit) < _UNLIMITED:
            found.append(max(0, int(limit) - usage))
        break
    return min(found) if found else None


def sort_memory_per_thread(setting: str, threads: int, available: int | None = None) -> str:
    """The per-thread sort memory to use: ``setting`` itself unless it is ``auto``; then
    ``SORT_SHARE`` of the available memory split between the threads, within 256 MiB and 4 GiB."""
    if setting.strip().lower() != AUTO:
        return setting
    if available is None:
        available = available_memory()
    if available is None:
        return f"{MIN_PER_THREAD * 3 // MIB}M"  # nothing to go by: the old fixed default
    share = int(available * SORT_SHARE) // max(threads, 1)
    return f"{min(MAX_PER_THREAD, max(MIN_PER_THREAD, share)) // MIB}M"
