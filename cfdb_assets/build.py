"""The two build steps of a cache_key, as plain functions over the adapters: the assets call them,
and tests call them without Dagster.

``sorted``: fetch the source and sort and compress it as it arrives (the checksum verified before
anything is stored), store the data (and the index when the sort wrote one) and the sorted-stage
record. ``index``: index the stored data unless
the sort already did, then commit the set by writing its manifest, last.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from cfdb_assets.formats import route_for
from cfdb_assets.pipelines import Incoming, ToolOptions, build_index, build_sorted, index_kind_of
from cfdb_assets.tools import tool_versions
from cfdb_assets.planning import OutputOptions, plan_for
from resources import (
    Artifact,
    ArtifactStore,
    Catalog,
    Manifest,
    SortedStage,
    SourceFetcher,
    SourceIdentity,
    SourceRow,
)

__all__ = ["BuildError", "Builder", "FetchProgress", "file_sha256", "sweep_stale_scratch"]

LOG = logging.getLogger("cfdb.build")
OWNER = ".owner"  # in each scratch directory, flock-ed by the process that uses it


class BuildError(Exception):
    """The partition cannot be built as asked (its record changed, or a stage is missing)."""

    permanent = False  # the catalog or an earlier stage can change; the same request may succeed later


@dataclass(frozen=True)
class Builder:
    """Everything the steps need: the adapters, the tool options and a scratch directory."""

    catalog: Catalog
    store: ArtifactStore
    fetcher: SourceFetcher
    tools: ToolOptions
    output: OutputOptions
    work_dir: Path
    log: logging.Logger | logging.LoggerAdapter = LOG
    progress: Callable[[str], None] = lambda text: None  # what the step is doing (/jobs "progress")

    def sorted(self, key: str, source: SourceRow, force: bool = False, label: str = "run") -> tuple[SortedStage, bool]:
        """The sorted data of ``key`` (built, or reused when already stored); whether it was reused."""
        if not force:
            manifest = self.store.valid_manifest(key)
            stage = manifest.sorted if manifest else self.store.sorted_stage(key)
            if stage and self.store.has(key, stage.data):
                self.log.info("Sorted data already in the store; reusing it.")
                return stage, True
        record = self.catalog.get(source.dcc, source.local_id)
        if record is None or not record.access_url:
            raise BuildError(f"{source.dcc}/{source.local_id} is not in the catalog or has no access URL.")
        if plan_for(record, self.output).cache_key != key:
            raise BuildError(
                f"The catalog record of {source.dcc}/{source.local_id} changed since partition {key} "
                "was requested (new checksum or settings); request the file again."
            )
        route = route_for(None, source.format)
        started = time.monotonic()
        with self.scratch(label) as workdir:
            self.progress("fetching")
            size_text = f" {_size_text(source.size)}" if source.size else ""
            fetched = FetchProgress(self.progress, source.size, f"fetching and sorting{size_text}")
            # The tools read the source while it arrives; its checksum is verified (result()) before
            # anything is stored.
            with self.fetcher.spool(record.access_url, workdir / "source", source.checksum, fetched) as spool:
                data = build_sorted(route, Incoming(spool.path, spool), workdir, self.tools)
                download = spool.result()
            self.log.info(f"Fetched {download.size} bytes, checksum verified; sorted.")
            self.progress("storing the sorted data")
            same_bytes = os.path.samefile(data, download.path)  # an already-sorted BAM
            stored = self._put(key, data, route.data_name, digest=download.sha256 if same_bytes else None)
            index = None
            kind = index_kind_of(data)  # the sort may have written the index in the same pass
            if kind:
                index = self._put(key, data.with_name(f"{data.name}.{kind}"), f"{route.data_name}.{kind}", kind)
        stage = SortedStage(
            data=stored,
            index=index,
            seconds=round(time.monotonic() - started, 3),
            source=SourceIdentity(
                dcc=source.dcc,
                local_id=source.local_id,
                filename=record.filename,
                format=route.format,
                checksum=source.checksum,
                bytes=download.size,
                md5=download.md5,
                sha256=download.sha256,
            ),
            tools=tool_versions(),
            options=self.output.as_key_options(),
        )
        self.store.put_sorted_stage(key, stage)
        return stage, False

    def index(self, key: str, force: bool = False, label: str = "run") -> tuple[Manifest, bool]:
        """The committed set of ``key``: index the sorted data if needed, then write the manifest."""
        manifest = None if force else self.store.valid_manifest(key)
        if manifest is not None:
            self.log.info("Artifact set already published; reusing it.")
            return manifest, True
        stage = self.store.sorted_stage(key)
        if stage is None:
            raise BuildError(f"Partition {key} has no sorted data in the store; materialize the sorted asset first.")
        route = route_for(None, stage.source.format)
        started = time.monotonic()
        index = stage.index
        if index and self.store.has(key, index):
            self.log.info(f"Using the {index.kind} index written by the sort.")
        else:
            self.progress("indexing")
            with self.scratch(label) as workdir:
                with self.store.local_path(key, stage.data.name, workdir) as data:
                    path, kind = build_index(route, data, workdir, self.tools)
                index = self._put(key, path, f"{stage.data.name}.{kind}", kind)
        manifest = Manifest(
            cache_key=key,
            family=route.family,
            format=route.format,
            data=stage.data,
            index=index,
            sorted=stage,
            tools=tool_versions(),
            options=stage.options,
            seconds={"sorted": stage.seconds, "index": round(time.monotonic() - started, 3)},
            created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        )
        self.store.put_manifest(key, manifest)
        return manifest, False

    def _put(self, key: str, path: Path, name: str, kind: str | None = None, digest: str | None = None) -> Artifact:
        """Store ``path`` as ``name``, hashing it (unless its ``digest`` is known) while the store
        writes it: the hash waits on the CPU, the store on the disk (fsync) or the network."""
        # The file is opened first: a put_file that consumes the path leaves the open file readable.
        with open(path, "rb") as fh, ThreadPoolExecutor(1, thread_name_prefix="hash") as pool:
            hashing = pool.submit(_sha256, fh) if digest is None else None
            size = self.store.put_file(key, name, path)
            return Artifact(name, size, digest or hashing.result(), kind)

    @contextlib.contextmanager
    def scratch(self, label: str) -> Iterator[Path]:
        """A fresh directory for one step, removed on every outcome; the scratch of dead workers
        (killed before they could clean up) is swept first."""
        self.work_dir.mkdir(parents=True, exist_ok=True)
        sweep_stale_scratch(self.work_dir)
        path = Path(tempfile.mkdtemp(prefix=f"{label[:8]}-", dir=self.work_dir))
        # Held for the directory's life: the kernel releases it when this process dies, however it dies.
        owner = open(path / OWNER, "w")  # closed in finally
        fcntl.flock(owner, fcntl.LOCK_EX)
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)
            owner.close()


class FetchProgress:
    """Turns a download's byte count into a progress sentence, at most every ``every_s`` seconds
    (each one is a ledger write)."""

    def __init__(self, report: Callable[[str], None], total: int | None, after: str = "", every_s: float = 2.0):
        self.report, self.total, self.after, self.every_s = report, total, after, every_s
        self._last = time.monotonic()
        self._received = 0

    def __call__(self, received: int) -> None:
        now = time.monotonic()
        done = self.total is not None and received >= self.total
        if now - self._last < self.every_s and not done:
            return
        self._last = now
        if done and self.after:
            self.report(self.after)  # the tools go on after the last byte
            return
        of = f" of {_size_text(self.total)}" if self.total else ""
        self.report(f"fetching and sorting: {_size_text(received)}{of} received")


def _size_text(size: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} bytes"


def sweep_stale_scratch(work_dir: Path, unowned_after_s: float = 600.0, remove: bool = True) -> list[str]:
    """Remove the scratch directories whose owner died (their lock is free); a directory without an
    owner file is left ``unowned_after_s`` to be claimed. Returns their names (only listed when not
    ``remove``)."""
    removed = []
    for path in work_dir.iterdir() if work_dir.is_dir() else ():
        if not path.is_dir():
            continue
        try:
            with open(path / OWNER) as owner:
                fcntl.flock(owner, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue  # a live worker's
        except FileNotFoundError:
            with contextlib.suppress(FileNotFoundError):
                if time.time() - path.stat().st_mtime < unowned_after_s:
                    continue
        if remove:
            shutil.rmtree(path, ignore_errors=True)
        removed.append(path.name)
    return removed


def file_sha256(path: Path) -> str:
    """sha256 of a file (the manifest's integrity record and the artifacts' ETag)."""
    with open(path, "rb") as fh:
        return _sha256(fh)


def _sha256(fh) -> str:
    digest = hashlib.sha256()
    while chunk := fh.read(1024 * 1024):
        digest.update(chunk)
    return digest.hexdigest()
