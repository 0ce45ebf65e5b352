"""The artifact store: content-addressed artifact sets, ready only once their manifest exists.

Layout: ``<root>/<cache_key>/data.<ext>``, ``data.<ext>.<bai|tbi|csi>``, ``manifest.json`` (written
last: the commit marker). Stage records (``stage-*.json``) let a retried run skip finished stages.
``ArtifactStore`` is the interface; ``LocalStore`` (a local directory, here) and ``S3Store``
(``resources.store_s3``) implement it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg

from resources.ranges import read_span
from resources.records import Artifact, Manifest, RecordError, SortedStage

__all__ = ["MANIFEST", "STAGE_SORTED", "ArtifactMissing", "ArtifactStore", "LocalStore", "StoreError", "StoredSet",
           "open_store"]

MANIFEST = "manifest.json"
STAGE_SORTED = "stage-sorted.json"
STAGE_TAG = "cfdb-stage=true"  # S3 object tag of stage records
CHUNK = 256 * 1024
TMP = ".tmp-"  # a local write in progress (renamed into place when complete)


class StoreError(Exception):
    """The store cannot be read or written."""


class ArtifactMissing(StoreError):
    """The artifact is not in the store (never built, or removed since it was looked up)."""


def _check_name(key: str, name: str) -> None:
    # Keys are hex digests and names are our own; refuse anything that could escape the root.
    for part in (key, name):
        if not part or "/" in part or "\\" in part or part in (".", "..") or "\0" in part:
            raise StoreError(f"Invalid artifact path component {part!r}.")


class ArtifactStore(dg.ConfigurableResource, ABC):
    """Where artifact sets live; the interface fits a local directory and S3 alike."""

    @abstractmethod
    def put_file(self, key: str, name: str, path: Path) -> int:
        """Store ``path`` as ``<key>/<name>`` atomically (the local file may be consumed); its size."""

    @abstractmethod
    def put_json(self, key: str, name: str, value: dict[str, Any]) -> None:
        """Store a small JSON document atomically (stage records, the manifest)."""

    @abstractmethod
    def get_json(self, key: str, name: str) -> dict[str, Any] | None:
        """A stored JSON document, or None when absent or unreadable."""

    @abstractmethod
    def size(self, key: str, name: str) -> int:
        """Size in bytes of an artifact; raises ArtifactMissing."""

    @abstractmethod
    def iter_range(self, key: str, name: str, start: int, end: int) -> Iterator[bytes]:
        """Bytes ``[start, end)`` of an artifact, in chunks; raises ArtifactMissing before the first."""

    @abstractmethod
    def local_path(self, key: str, name: str, workdir: Path) -> contextlib.AbstractContextManager[Path]:
        """A local file holding the artifact (the stored file itself, or a copy in ``workdir``)."""

    def manifest(self, key: str) -> Manifest | None:
        """The manifest of a ready artifact set, or None (not built, incomplete, or unreadable)."""
        return _record(Manifest, self.get_json(key, MANIFEST))

    def valid_manifest(self, key: str) -> Manifest | None:
        """The manifest, only if every artifact it lists is present with its recorded size."""
        manifest = self.manifest(key)
        if manifest is None or not all(self.has(key, a) for a in manifest.artifacts):
            return None
        return manifest

    def put_manifest(self, key: str, manifest: Manifest) -> None:
        """Commit an artifact set: after this, readers see it as ready."""
        self.put_json(key, MANIFEST, manifest.to_json())

    def sorted_stage(self, key: str) -> SortedStage | None:
        """The sort step's record (lets the index step, or a retried run, reuse the sorted data)."""
        return _record(SortedStage, self.get_json(key, STAGE_SORTED))

    def put_sorted_stage(self, key: str, stage: SortedStage) -> None:
        self.put_json(key, STAGE_SORTED, stage.to_json())

    def has(self, key: str, artifact: Artifact) -> bool:
        """Whether the artifact is stored with its recorded size."""
        try:
            return self.size(key, artifact.name) == artifact.size
        except ArtifactMissing:
            return False

    @abstractmethod
    def check(self) -> None:
        """Raise StoreError when the store is unusable (checked once at startup)."""

    # --- housekeeping (cfdb_assets.housekeeping) ---------------------------------------------

    @abstractmethod
    def sets(self) -> Iterator[StoredSet]:
        """Every artifact set (committed or not), in key order."""

    @abstractmethod
    def delete_set(self, key: str) -> int:
        """Remove every object of a set; how many were removed."""

    @abstractmethod
    def partial_uploads(self, before: datetime, remove: bool) -> list[str]:
        """Uploads a dead writer left unfinished, started before ``before`` (temp files, S3
        multipart uploads), named; removed when ``remove``."""


@dataclass(frozen=True)
class StoredSet:
    """One cache_key's objects, as housekeeping sees them."""

    key: str
    names: tuple[str, ...]
    modified: datetime  # the newest object's time

    @property
    def committed(self) -> bool:
        return MANIFEST in self.names


class LocalStore(ArtifactStore):
    """A directory on local disk; writes are temp file + fsync + rename."""

    root: str

    def _dir(self, key: str) -> Path:
        return Path(self.root) / key

    def _path(self, key: str, name: str) -> Path:
        _check_name(key, name)
        return self._dir(key) / name

    def path(self, key: str, name: str) -> Path:
        """The file of one artifact (serving reads it directly); raises StoreError for a name that
        could leave the store."""
        return self._path(key, name)

    def put_file(self, key: str, name: str, path: Path) -> int:
        dest = self._path(key, name)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.parent / f"{TMP}{uuid.uuid4().hex}-{name}"
        try:
            try:
                os.link(path, tmp)  # same filesystem: no copy
            except OSError:
                shutil.copyfile(path, tmp)
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)
        return dest.stat().st_size

    def put_json(self, key: str, name: str, value: dict[str, Any]) -> None:
        dest = self._path(key, name)
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=TMP)
        try:
            with os.fdopen(fd, "w") as fh:
                json.dump(value, fh, indent=2, sort_keys=True)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, dest)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    def get_json(self, key: str, name: str) -> dict[str, Any] | None:
        try:
            with open(self._path(key, name), encoding="utf-8") as fh:
                value = json.load(fh)
        except (OSError, ValueError):
            return None
        return value if isinstance(value, dict) else None

    def size(self, key: str, name: str) -> int:
        try:
            return self._path(key, name).stat().st_size
        except FileNotFoundError:
            raise ArtifactMissing(f"{key}/{name} is not in the store.") from None

    def iter_range(self, key: str, name: str, start: int, end: int) -> Iterator[bytes]:
        try:
            fh = open(self._path(key, name), "rb")
        except FileNotFoundError:
            raise ArtifactMissing(f"{key}/{name} is not in the store.") from None
        return read_span(fh, start, end, CHUNK)

    @contextlib.contextmanager
    def local_path(self, key: str, name: str, workdir: Path) -> Iterator[Path]:
        path = self._path(key, name)
        if not path.exists():
            raise ArtifactMissing(f"{key}/{name} is not in the store.")
        yield path

    def check(self) -> None:
        try:
            Path(self.root).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"The artifact directory {self.root} cannot be created ({exc.strerror}); "
                "set CFDB_DATA_DIR to a writable directory."
            ) from None
        if not os.access(self.root, os.W_OK):
            raise StoreError(f"The artifact directory {self.root} is not writable.")

    def sets(self) -> Iterator[StoredSet]:
        root = Path(self.root)
        for path in sorted(root.iterdir()) if root.is_dir() else []:
            files = [f for f in path.iterdir() if f.is_file() and not f.name.startswith(TMP)] if path.is_dir() else []
            if files:
                newest = max(f.stat().st_mtime for f in files)
                yield StoredSet(path.name, tuple(sorted(f.name for f in files)), datetime.fromtimestamp(newest, UTC))

    def delete_set(self, key: str) -> int:
        path = self._dir(key)
        _check_name(key, MANIFEST)
        count = sum(1 for f in path.iterdir() if f.is_file()) if path.is_dir() else 0
        shutil.rmtree(path, ignore_errors=True)
        return count

    def partial_uploads(self, before: datetime, remove: bool) -> list[str]:
        found = []
        for tmp in sorted(Path(self.root).glob(f"*/{TMP}*")):
            if datetime.fromtimestamp(tmp.stat().st_mtime, UTC) < before:
                found.append(f"{tmp.parent.name}/{tmp.name}")
                if remove:
                    tmp.unlink(missing_ok=True)
        return found


def _record(cls, doc: dict[str, Any] | None):
    if doc is None:
        return None
    try:
        return cls.from_json(doc)
    except (RecordError, TypeError, ValueError, AttributeError):
        return None  # unreadable: the set is not ready, and the step that writes it runs again


def open_store(location: str, endpoint_url: str | None = None) -> ArtifactStore:
    """``s3://bucket[/prefix]`` → S3Store; a directory path (or file://) → LocalStore."""
    if location.startswith("s3://"):
        bucket, _, prefix = location.removeprefix("s3://").partition("/")
        if not bucket:
            raise StoreError(f"Invalid store location {location!r}: expected s3://bucket[/prefix].")
        from resources.store_s3 import S3Store  # boto3 is imported only by an S3 deployment

        return S3Store(bucket=bucket, prefix=prefix, endpoint_url=endpoint_url)
    if "://" in location and not location.startswith("file://"):
        raise StoreError(
            f"Unsupported store location {location!r}: expected a directory, file:// or s3://bucket[/prefix]."
        )
    return LocalStore(root=location.removeprefix("file://"))
