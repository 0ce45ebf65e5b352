"""Run sizing: how big a worker a partition's run gets, from its source's size and family.

One table (``SIZE_CLASSES``) and one function (``size_run``) serve the on-demand sensor and operator
backfills alike: both reach ``run_tags`` through the family job's partitioned config, so every run
of a partition carries the same tags. Fargate reads ``ecs/cpu``, ``ecs/memory`` and
``ecs/ephemeral_storage`` (dagster-aws's EcsRunLauncher turns them into RunTask overrides); the run
coordinator limits runs per ``cfdb/size_class`` (deploy/dagster.yaml); run monitoring stops a run
past ``dagster/max_runtime``; the build reads ``cfdb/threads`` and ``cfdb/sort_memory`` so its tools
use the task it got. None of them shapes the artifact bytes, so the cache key does not change.
Pure: no Dagster, no I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from cfdb_assets.formats import ALIGNMENTS

__all__ = ["SIZE_CLASSES", "SIZE_CLASS_TAG", "SORT_MEMORY_TAG", "THREADS_TAG", "RunSize", "SizeClass", "size_run"]

SIZE_CLASS_TAG = "cfdb/size_class"
THREADS_TAG = "cfdb/threads"
SORT_MEMORY_TAG = "cfdb/sort_memory"

GIB = 1 << 30
FARGATE_MIN_STORAGE_GIB = 21  # the smallest ephemeral-storage override Fargate accepts
FARGATE_MAX_STORAGE_GIB = 200
# Disk a build needs per source byte: the download, the sort's spill and the sorted output. A BAM's
# spill and output are about its size; a (often gzipped) text source's spill is uncompressed text,
# several times the source.
DISK_PER_SOURCE_BYTE = {ALIGNMENTS: 3.0}
DISK_PER_SOURCE_BYTE_TEXT = 6.0
DISK_HEADROOM_GIB = 4  # the image, the Python worker, the index
# The original service capped a workflow at 4 h; ~10 min per GiB on 1 vCPU leaves room for slow
# upstreams without letting a wedged run hold a worker all day.
MAX_RUNTIME_S = 4 * 3600
RUNTIME_BASE_S = 1800
RUNTIME_PER_GIB_S = 600
UNKNOWN_SIZE_STORAGE_GIB = 50  # a catalog record without a size: room for ~8 GiB of BAM


@dataclass(frozen=True)
class SizeClass:
    """A worker shape: valid Fargate cpu/memory pairs, tool threads to match."""

    name: str
    up_to_bytes: int | None  # the largest source of this class (None: anything the disk allows)
    cpu: int  # Fargate CPU units (1024 = 1 vCPU)
    memory_mib: int
    threads: int

    @property
    def sort_memory(self) -> str:
        """Per sort thread: half the task's memory shared by the threads (samtools sort's -m is per
        thread; GNU sort's buffer is the threads' total, the same half)."""
        return f"{self.memory_mib // 2 // self.threads}M"


SIZE_CLASSES = (
    SizeClass("small", 1 * GIB, cpu=1024, memory_mib=4096, threads=2),
    SizeClass("medium", 8 * GIB, cpu=2048, memory_mib=8192, threads=2),
    SizeClass("large", 32 * GIB, cpu=4096, memory_mib=16384, threads=4),
    SizeClass("huge", None, cpu=8192, memory_mib=32768, threads=8),
)


@dataclass(frozen=True)
class RunSize:
    """The worker one partition's run gets; ``refusal`` says why none is big enough."""

    size_class: SizeClass
    storage_gib: int
    max_runtime_s: int
    refusal: str | None = None

    def tags(self, fargate: bool) -> dict[str, str]:
        """The run's tags: the class always (the coordinator's limits), the worker's shape when
        ``fargate`` (on this machine the tools keep CFDB_THREADS and CFDB_SORT_MEMORY)."""
        tags = {SIZE_CLASS_TAG: self.size_class.name}
        if fargate:
            tags.update({
                "ecs/cpu": str(self.size_class.cpu),
                "ecs/memory": str(self.size_class.memory_mib),
                "ecs/ephemeral_storage": str(self.storage_gib),
                "dagster/max_runtime": str(self.max_runtime_s),
                THREADS_TAG: str(self.size_class.threads),
                SORT_MEMORY_TAG: self.size_class.sort_memory,
            })
        return tags


def size_run(family: str, size: int | None) -> RunSize:
    """The worker for a source of ``size`` bytes (None: unknown) in ``family``."""
    if size is None:
        return RunSize(_class_named("medium"), UNKNOWN_SIZE_STORAGE_GIB, MAX_RUNTIME_S)
    size_class = next(c for c in SIZE_CLASSES if c.up_to_bytes is None or size <= c.up_to_bytes)
    per_byte = DISK_PER_SOURCE_BYTE.get(family, DISK_PER_SOURCE_BYTE_TEXT)
    needed = math.ceil(size * per_byte / GIB) + DISK_HEADROOM_GIB
    runtime = min(MAX_RUNTIME_S, RUNTIME_BASE_S + math.ceil(size / GIB * RUNTIME_PER_GIB_S))
    refusal = None
    if needed > FARGATE_MAX_STORAGE_GIB:
        refusal = (
            f"The source is {size / GIB:.1f} GiB; building it needs about {needed} GiB of worker disk, "
            f"more than a Fargate task's {FARGATE_MAX_STORAGE_GIB} GiB. Read it with ?raw=true, or "
            "build it on a bigger worker."
        )
    storage = min(FARGATE_MAX_STORAGE_GIB, max(FARGATE_MIN_STORAGE_GIB, needed))
    return RunSize(size_class, storage, runtime, refusal)


def _class_named(name: str) -> SizeClass:
    return next(c for c in SIZE_CLASSES if c.name == name)
