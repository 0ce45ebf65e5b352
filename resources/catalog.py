"""The file catalog: C2M2 file records, from MongoDB or an embedded JSON Lines file.

``Catalog`` is the interface (three methods); ``FileCatalog`` and ``MongoCatalog`` implement it;
``open_catalog`` picks one by the location's scheme.
"""

from __future__ import annotations

import bisect
import builtins
import json
import logging
import os
import threading
from abc import ABC, abstractmethod
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
from pydantic import PrivateAttr
from pymongo.errors import PyMongoError

__all__ = ["Catalog", "CatalogError", "FileCatalog", "FileRecord", "LoadReport", "MongoCatalog", "open_catalog"]

log = logging.getLogger("cfdb.catalog")
NO_LOCAL_ID = "no local_id"
UNSERVED_DCC = "submission is not a served DCC"
EXAMPLES = 5

# The original service's projection (reference §2), plus sha256 (our fallback checksum).
PROJECTION = {
    "_id": 0,
    "submission": 1,
    "local_id": 1,
    "md5": 1,
    "sha256": 1,
    "size_in_bytes": 1,
    "access_url": 1,
    "filename": 1,
    "file_format": 1,
    "dcc.dcc_abbreviation": 1,
    "data_access_level": 1,
    "genome_assembly": 1,
    "extra.extra_files": 1,
    "extra.fourdn.extra_files": 1,
}


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

    def _skip_reason(self, record: FileRecord) -> str | None:
        if not record.local_id:
            return NO_LOCAL_ID
        if self.dccs is not None and record.dcc not in self.dccs:
            return UNSERVED_DCC
        return None


class FileCatalog(Catalog):
    """A JSON Lines file of catalog documents (the embedded default); reloaded when it changes."""

    path: str

    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)
    _loaded: tuple[float, int] | None = PrivateAttr(default=None)
    _by_key: dict[tuple[str, str], FileRecord] = PrivateAttr(default_factory=dict)
    _by_dcc: dict[str, list[FileRecord]] = PrivateAttr(default_factory=dict)
    _report: LoadReport | None = PrivateAttr(default=None)

    def report(self) -> LoadReport | None:
        return self._report

    def get(self, dcc: str, local_id: str) -> FileRecord | None:
        self._refresh()
        return self._by_key.get((dcc.strip().lower(), local_id))

    def list(self, dcc: str, limit: int, after: str | None = None) -> list[FileRecord]:
        self._refresh()
        records = self._by_dcc.get(dcc.strip().lower(), [])
        start = 0
        if after is not None:
            start = bisect.bisect_right([r.local_id for r in records], after)
        return records[start : start + limit]

    def check(self) -> None:
        self._refresh()

    def _refresh(self) -> None:
        try:
            st = os.stat(self.path)
        except OSError as exc:
            raise CatalogError(
                f"The catalog file {self.path} cannot be read ({exc.strerror}); "
                "set CFDB_CATALOG to a JSON Lines file or a mongodb:// URI."
            ) from None
        stamp = (st.st_mtime, st.st_size)
        if stamp == self._loaded:
            return
        with self._lock:
            if stamp == self._loaded:
                return
            by_key: dict[tuple[str, str], FileRecord] = {}
            documents, skipped, examples = 0, Counter(), []
            try:
                fh = open(self.path, encoding="utf-8")
            except OSError as exc:  # e.g. a directory, or removed since the stat
                raise CatalogError(
                    f"The catalog file {self.path} cannot be read ({exc.strerror}); "
                    "set CFDB_CATALOG to a JSON Lines file or a mongodb:// URI."
                ) from None
            with fh:
                for number, line in enumerate(fh, 1):
                    if not line.strip():
                        continue
                    try:
                        doc = json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise CatalogError(
                            f"Line {number} of the catalog file {self.path} is not JSON ({exc.msg}); "
                            "fix or remove that line."
                        ) from None
                    if not isinstance(doc, dict):
                        raise CatalogError(
                            f"Line {number} of the catalog file {self.path} is not a JSON object; "
                            "fix or remove that line."
                        )
                    record = FileRecord.from_document(doc)
                    documents += 1
                    reason = self._skip_reason(record)
                    if reason:
                        skipped[reason] += 1
                        if len(examples) < EXAMPLES:
                            examples.append(f"line {number} ({record.dcc or 'no submission'}/{record.local_id or 'no local_id'})")
                        continue
                    # First document wins, like find_one over a duplicated local_id.
                    by_key.setdefault((record.dcc, record.local_id), record)
            by_dcc: dict[str, list[FileRecord]] = {}
            for record in sorted(by_key.values(), key=lambda r: r.local_id):
                by_dcc.setdefault(record.dcc, []).append(record)
            self._by_key, self._by_dcc, self._loaded = by_key, by_dcc, stamp
            self._report = LoadReport(documents, dict(skipped), tuple(examples))
            self._report.log(os.path.basename(self.path), self.dccs)


class MongoCatalog(Catalog):
    """The CFDB MongoDB: ``files`` (materialized C2M2 records), then the raw ``file`` collection."""

    uri: str
    database: str = "cfdb"
    timeout_ms: int = 5000

    _client: Any = PrivateAttr(default=None)
    _report: LoadReport | None = PrivateAttr(default=None)

    def report(self) -> LoadReport | None:
        return self._report

    def _db(self):
        if self._client is None:
            import pymongo

            self._client = pymongo.MongoClient(self.uri, serverSelectionTimeoutMS=self.timeout_ms)
        return self._client[self.database]

    def get(self, dcc: str, local_id: str) -> FileRecord | None:
        query = {"submission": dcc.strip().lower(), "local_id": local_id}
        try:
            db = self._db()
            doc = db["files"].find_one(query, PROJECTION) or db["file"].find_one(query, PROJECTION)
        except PyMongoError as exc:
            raise CatalogError(f"The catalog database cannot be queried: {type(exc).__name__}.") from exc
        return FileRecord.from_document(doc) if doc else None

    def list(self, dcc: str, limit: int, after: str | None = None) -> list[FileRecord]:
        query: dict[str, Any] = {"submission": dcc.strip().lower()}
        if after is not None:
            query["local_id"] = {"$gt": after}
        try:
            cursor = self._db()["files"].find(query, PROJECTION).sort("local_id", 1).limit(limit)
            return [FileRecord.from_document(doc) for doc in cursor]
        except PyMongoError as exc:
            raise CatalogError(f"The catalog database cannot be queried: {type(exc).__name__}.") from exc

    def check(self) -> None:
        try:
            self._db().command("ping")
            self._report = self._count_skipped()
        except PyMongoError as exc:
            raise CatalogError(
                f"The catalog database at {_redact(self.uri)} is unreachable ({type(exc).__name__}); "
                "check CFDB_CATALOG."
            ) from exc


    def _count_skipped(self) -> LoadReport:
        """Count the ``files`` documents no lookup can reach (once, at startup)."""
        files = self._db()["files"]
        unreachable: list[tuple[str, dict[str, Any]]] = [(NO_LOCAL_ID, {"local_id": {"$in": [None, ""]}})]
        if self.dccs is not None:
            unreachable.append((UNSERVED_DCC, {"submission": {"$nin": list(self.dccs)}, "local_id": {"$nin": [None, ""]}}))
        skipped, examples = {}, []
        for reason, query in unreachable:
            count = files.count_documents(query)
            if count:
                skipped[reason] = count
                for doc in files.find(query, {"_id": 1, "submission": 1, "local_id": 1}).limit(EXAMPLES):
                    examples.append(f"{doc.get('submission') or 'no submission'}/{doc.get('local_id') or doc['_id']}")
        report = LoadReport(files.estimated_document_count(), skipped, tuple(examples[:EXAMPLES]))
        report.log(f"{self.database}.files", self.dccs)
        return report


def _redact(uri: str) -> str:
    scheme, sep, rest = uri.partition("://")
    return f"{scheme}{sep}{rest.rpartition('@')[2]}"


def open_catalog(location: str, database: str = "cfdb", dccs: tuple[str, ...] | None = None) -> Catalog:
    """``mongodb://`` or ``mongodb+srv://`` → MongoCatalog; a file path → FileCatalog. Documents
    of DCCs outside ``dccs`` are reported as skipped."""
    served = list(dccs) if dccs is not None else None
    if location.startswith(("mongodb://", "mongodb+srv://")):
        return MongoCatalog(uri=location, database=database, dccs=served)
    if "://" in location and not location.startswith("file://"):
        raise CatalogError(
            f"Unsupported catalog location {location!r}: expected a file path, file://, "
            "mongodb:// or mongodb+srv://."
        )
    return FileCatalog(path=location.removeprefix("file://"), dccs=served)
