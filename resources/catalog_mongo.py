"""The CFDB MongoDB catalog: ``files`` (materialized C2M2 records), then the raw ``file`` collection."""

from __future__ import annotations

from typing import Any

from pydantic import PrivateAttr
from pymongo.errors import PyMongoError

from resources.catalog import EXAMPLES, NO_LOCAL_ID, UNSERVED_DCC, Catalog, CatalogError, FileRecord, LoadReport

__all__ = ["MongoCatalog"]

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
