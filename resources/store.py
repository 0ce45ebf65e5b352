"""The artifact store: content-addressed artifact sets, ready only once their manifest exists.

Layout: ``<root>/<cache_key>/data.<ext>``, ``data.<ext>.<bai|tbi|csi>``, ``manifest.json`` (written
last: the commit marker). Stage records (``stage-*.json``) let a retried run skip finished stages.
``ArtifactStore`` is the interface; ``LocalStore`` is the local-directory implementation.
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
from pathlib import Path
from typing import Any

import dagster as dg

__all__ = ["MANIFEST", "ArtifactMissing", "ArtifactStore", "LocalStore", "StoreError", "open_store"]

MANIFEST = "manifest.json"
CHUNK = 256 * 1024


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

    def manifest(self, key: str) -> dict[str, Any] | None:
        """The manifest of a ready artifact set, or None (not built, or incomplete)."""
        manifest = self.get_json(key, MANIFEST)
        if not manifest or not isinstance(manifest.get("artifacts"), dict):
            return None
        return manifest

    def valid_manifest(self, key: str) -> dict[str, Any] | None:
        """The manifest, only if every artifact it lists is present with its recorded size."""
        manifest = self.manifest(key)
        if manifest is None:
            return None
        try:
            for entry in manifest["artifacts"].values():
                if self.size(key, entry["name"]) != entry["size"]:
                    return None
        except (ArtifactMissing, KeyError, TypeError):
            return None
        return manifest

    def put_manifest(self, key: str, manifest: dict[str, Any]) -> None:
        """Commit an artifact set: after this, readers see it as ready."""
        self.put_json(key, MANIFEST, manifest)

    @abstractmethod
    def check(self) -> None:
        """Raise StoreError when the store is unusable (checked once at startup)."""


class LocalStore(ArtifactStore):
    """A directory on local disk; writes are temp file + fsync + rename."""

    root: str

    def _dir(self, key: str) -> Path:
        return Path(self.root) / key

    def _path(self, key: str, name: str) -> Path:
        _check_name(key, name)
        return self._dir(key) / name

    def put_file(self, key: str, name: str, path: Path) -> int:
        dest = self._path(key, name)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.parent / f".tmp-{uuid.uuid4().hex}-{name}"
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
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".tmp-")
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
        return _read_chunks(fh, start, end)

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


def _read_chunks(fh, start: int, end: int) -> Iterator[bytes]:
    with fh:
        fh.seek(start)
        remaining = end - start
        while remaining > 0:
            chunk = fh.read(min(CHUNK, remaining))
            if not chunk:
                break
            remaining -= len(chunk)
            yield chunk


def open_store(location: str) -> ArtifactStore:
    """A directory path (or file://) → LocalStore. (s3:// arrives with S3Store.)"""
    if "://" in location and not location.startswith("file://"):
        raise StoreError(f"Unsupported store location {location!r}: expected a directory or file://.")
    return LocalStore(root=location.removeprefix("file://"))
