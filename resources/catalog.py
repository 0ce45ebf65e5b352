"""The file catalog: C2M2 file records. ``Catalog`` is the interface (three methods); the JSON Lines
catalogs (a local file, an S3 snapshot: ``catalog_jsonl``) and MongoDB (``catalog_mongo``) implement
it; ``resources.wiring.open_catalog`` picks one by the location's scheme.
"""

from __future__ import annotations

import builtins
import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

import dagster as dg

__all__ = ["Catalog", "CatalogError", "FileRecord", "LoadReport"]

log = logging.getLogger("cfdb.catalog")
NO_LOCAL_ID = "no local_id"
UNSERVED_DCC = "submission is not a served DCC"
EXAMPLES = 5

class CatalogError(Exception):
    """The catalog cannot be read (bad location, unreachable server, malformed file)."""


@dataclass(frozen=True)
class FileRecord:
    """One catalog file, normalized from a ``files`` (materialized) or ``file`` (raw) document."""

    dcc: str
    local_id: str
    md5: str | None = None
    sha256: str | None = None
    size: int | None = None
    access_url: str | None = None
    filename: str | None = None
    format_id: str | None = None
    format_name: str | None = None
    dcc_abbreviation: str | None = None
    data_access_level: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> FileRecord:
        fmt = doc.get("file_format")
        if isinstance(fmt, dict):
            format_id, format_name = fmt.get("id"), fmt.get("name")
        else:  # a raw `file` row holds a bare EDAM id string
            format_id, format_name = (fmt if isinstance(fmt, str) else None), None
        dcc_doc = doc.get("dcc") if isinstance(doc.get("dcc"), dict) else {}
        return cls(
            dcc=str(doc.get("submission") or "").strip().lower(),
            local_id=str(doc.get("local_id") or ""),
            md5=_text(doc.get("md5")),
            sha256=_text(doc.get("sha256")),
            size=_size(doc.get("size_in_bytes")),
            access_url=_text(doc.get("access_url")),
            filename=_text(doc.get("filename")),
            format_id=_text(format_id),
            format_name=_text(format_name),
            dcc_abbreviation=_text(dcc_doc.get("dcc_abbreviation")),
            data_access_level=_text(doc.get("data_access_level")),
            extra=doc.get("extra") if isinstance(doc.get("extra"), dict) else {},
        )


def _text(value: Any) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def _size(value: Any) -> int | None:
    # 4DN and HuBMAP load size_in_bytes from TSVs, so it may be a string.
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    # isdigit() alone also accepts e.g. "²", which int() rejects: only ASCII digits are a size.
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        return int(value.strip())
    return None


@dataclass(frozen=True)
class LoadReport:
    """What a catalog load (or check) found: documents read, and those it cannot serve, by reason,
    with the first few of them (a catalog whose spelling differs must not just look empty)."""

    documents: int
    skipped: dict[str, int]
    examples: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"documents": self.documents, "skipped": dict(self.skipped), "skipped_examples": list(self.examples)}

    def log(self, where: str, dccs: list[str] | None) -> None:
        """One summary line per load: quiet when nothing was skipped."""
        if not self.skipped:
            log.info("Catalog %s: %d documents.", where, self.documents)
            return
        reasons = ", ".join(f"{count} with {reason}" for reason, count in self.skipped.items())
        served = f" (served DCCs: {', '.join(dccs)}; set CFDB_DCCS)" if dccs else ""
        log.warning(
            "Catalog %s: skipped %d of %d documents: %s%s; first: %s.",
            where, sum(self.skipped.values()), self.documents, reasons, served, "; ".join(self.examples),
        )


class Catalog(dg.ConfigurableResource, ABC):
    """Looks up catalog files by (dcc, local_id) and lists them per DCC."""

    # The served DCCs: documents of others are counted as skipped. (builtins: `list` is a method here.)
    dccs: builtins.list[str] | None = None

    @abstractmethod
    def get(self, dcc: str, local_id: str) -> FileRecord | None:
        """The record for this DCC (the URL name, e.g. ``encode``) and local_id, or None."""

    @abstractmethod
    def list(self, dcc: str, limit: int, after: str | None = None) -> list[FileRecord]:
        """Up to ``limit`` records of one DCC ordered by local_id, starting after ``after``."""

    @abstractmethod
    def check(self) -> None:
        """Raise CatalogError when the catalog cannot be read (checked once at startup)."""

    def report(self) -> LoadReport | None:
        """What the last load or check found, or None before one."""
        return None

    def reload_error(self) -> str | None:
        """Why the last reload failed (the previous load is still served), or None."""
        return None

    def _skip_reason(self, record: FileRecord) -> str | None:
        if not record.local_id:
            return NO_LOCAL_ID
        if self.dccs is not None and record.dcc not in self.dccs:
            return UNSERVED_DCC
        return None
