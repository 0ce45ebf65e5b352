"""The records a build leaves in the store for other processes: the sorted-stage record (the sort
step → the index step, possibly in another run) and the manifest (the index step → the API).

Each is a frozen dataclass with ``to_json``/``from_json``. The JSON layout is a public contract
(operators and scripts read ``manifest.json``): fields are only ever added, and ``version`` says
which layout wrote it. Version 1 (no ``version`` field) has the same layout and still reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["MANIFEST_VERSION", "Artifact", "Manifest", "RecordError", "SortedStage", "SourceIdentity"]

MANIFEST_VERSION = 2


class RecordError(ValueError):
    """A stored record is not one this code can read (treated as absent: the step runs again)."""


def _get(doc: Any, name: str, kind: type | tuple[type, ...]) -> Any:
    value = doc.get(name) if isinstance(doc, dict) else None
    if not isinstance(value, kind) or isinstance(value, bool):  # no field of ours is a bool
        raise RecordError(f"The record has no valid {name!r}.")
    return value


@dataclass(frozen=True)
class Artifact:
    """One stored file of a set: its name under the cache_key, size, sha256 (the ETag), index kind."""

    name: str
    size: int
    sha256: str
    kind: str | None = None  # bai, tbi or csi for an index

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "size": self.size, "sha256": self.sha256}
        if self.kind:
            out["kind"] = self.kind
        return out

    @classmethod
    def from_json(cls, doc: Any) -> Artifact:
        kind = doc.get("kind") if isinstance(doc, dict) else None
        return cls(_get(doc, "name", str), _get(doc, "size", int), _get(doc, "sha256", str), kind)


@dataclass(frozen=True)
class SourceIdentity:
    """Which catalog file the set was built from, and the bytes that were fetched."""

    dcc: str
    local_id: str
    filename: str | None
    format: str
    checksum: str
    bytes: int
    md5: str
    sha256: str

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_json(cls, doc: Any) -> SourceIdentity:
        return cls(
            dcc=_get(doc, "dcc", str),
            local_id=_get(doc, "local_id", str),
            filename=doc.get("filename") if isinstance(doc.get("filename"), str) else None,
            format=_get(doc, "format", str),
            checksum=_get(doc, "checksum", str),
            bytes=_get(doc, "bytes", int),
            md5=_get(doc, "md5", str),
            sha256=_get(doc, "sha256", str),
        )


@dataclass(frozen=True)
class SortedStage:
    """What the sort step stored: the data artifact and, when the sort wrote one, its index."""

    data: Artifact
    index: Artifact | None
    seconds: float
    source: SourceIdentity
    tools: dict[str, str]
    options: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            **self.data.to_json(),
            "index": self.index.to_json() if self.index else None,
            "seconds": self.seconds,
            "source": self.source.to_json(),
            "tools": self.tools,
            "options": self.options,
        }

    @classmethod
    def from_json(cls, doc: Any) -> SortedStage:
        index = doc.get("index") if isinstance(doc, dict) else None
        return cls(
            data=Artifact.from_json(doc),
            index=Artifact.from_json(index) if index else None,
            seconds=float(_get(doc, "seconds", (int, float))),
            source=SourceIdentity.from_json(_get(doc, "source", dict)),
            tools=dict(_get(doc, "tools", dict)),
            options=dict(_get(doc, "options", dict)),
        )


@dataclass(frozen=True)
class Manifest:
    """A ready artifact set (``manifest.json``, written last: its presence makes the set ready)."""

    cache_key: str
    family: str
    format: str
    data: Artifact
    index: Artifact
    sorted: SortedStage
    tools: dict[str, str]
    options: dict[str, Any]
    seconds: dict[str, float]
    created_at: str  # UTC, %Y-%m-%dT%H:%M:%SZ

    @property
    def index_type(self) -> str | None:
        return self.index.kind

    @property
    def source(self) -> SourceIdentity:
        return self.sorted.source

    @property
    def artifacts(self) -> tuple[Artifact, Artifact]:
        return self.data, self.index

    def artifact(self, name: str) -> Artifact | None:
        """The artifact stored under ``name``, or None when the set has no such file."""
        return next((a for a in self.artifacts if a.name == name), None)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": MANIFEST_VERSION,
            "cache_key": self.cache_key,
            "family": self.family,
            "format": self.format,
            "index_type": self.index_type,
            "artifacts": {"data": self.data.to_json(), "index": self.index.to_json()},
            "sorted": self.sorted.to_json(),
            "source": self.source.to_json(),
            "tools": self.tools,
            "options": self.options,
            "seconds": self.seconds,
            "created_at": self.created_at,
        }

    @classmethod
    def from_json(cls, doc: Any) -> Manifest:
        version = doc.get("version", 1) if isinstance(doc, dict) else None
        if version not in (1, MANIFEST_VERSION):
            raise RecordError(f"Manifest version {version!r} is not one this code reads.")
        artifacts = _get(doc, "artifacts", dict)
        index = Artifact.from_json(_get(artifacts, "index", dict))
        if index.kind is None and isinstance(doc.get("index_type"), str):
            index = Artifact(index.name, index.size, index.sha256, doc["index_type"])
        return cls(
            cache_key=_get(doc, "cache_key", str),
            family=_get(doc, "family", str),
            format=_get(doc, "format", str),
            data=Artifact.from_json(_get(artifacts, "data", dict)),
            index=index,
            sorted=SortedStage.from_json(_get(doc, "sorted", dict)),
            tools=dict(_get(doc, "tools", dict)),
            options=dict(_get(doc, "options", dict)),
            seconds={k: float(v) for k, v in _get(doc, "seconds", dict).items()},
            created_at=_get(doc, "created_at", str),
        )
