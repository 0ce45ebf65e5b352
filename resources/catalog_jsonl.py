"""JSON Lines catalogs: a file on local disk (the embedded default) or a snapshot in S3."""

from __future__ import annotations

import bisect
import builtins
import contextlib
import json
import os
import threading
import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any

from pydantic import PrivateAttr

from resources.catalog import EXAMPLES, Catalog, CatalogError, FileRecord, LoadReport

__all__ = ["FileCatalog", "JsonLinesCatalog", "S3Catalog"]


class JsonLinesCatalog(Catalog, ABC):
    """Catalog documents as JSON Lines, indexed in memory and reloaded when the source changes."""

    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)
    _loaded: Any = PrivateAttr(default=None)
    _by_key: dict[tuple[str, str], FileRecord] = PrivateAttr(default_factory=dict)
    _by_dcc: dict[str, builtins.list[FileRecord]] = PrivateAttr(default_factory=dict)
    _report: LoadReport | None = PrivateAttr(default=None)

    @abstractmethod
    def _stamp(self) -> Any:
        """What changes when the source changes (mtime and size, an ETag); CatalogError if unreadable."""

    @abstractmethod
    def _lines(self) -> contextlib.AbstractContextManager[Iterable[str]]:
        """The source's lines; CatalogError if unreadable."""

    @property
    @abstractmethod
    def _where(self) -> str:
        """The source, for messages."""

    def report(self) -> LoadReport | None:
        return self._report

    def get(self, dcc: str, local_id: str) -> FileRecord | None:
        self._refresh()
        return self._by_key.get((dcc.strip().lower(), local_id))

    def list(self, dcc: str, limit: int, after: str | None = None) -> builtins.list[FileRecord]:
        self._refresh()
        records = self._by_dcc.get(dcc.strip().lower(), [])
        start = 0
        if after is not None:
            start = bisect.bisect_right([r.local_id for r in records], after)
        return records[start : start + limit]

    def check(self) -> None:
        self._refresh()

    def _refresh(self) -> None:
        stamp = self._stamp()
        if stamp == self._loaded:
            return
        with self._lock:
            if stamp == self._loaded:
                return
            by_key: dict[tuple[str, str], FileRecord] = {}
            documents, skipped, examples = 0, Counter(), []
            with self._lines() as lines:
                for number, line in enumerate(lines, 1):
                    if not line.strip():
                        continue
                    record = FileRecord.from_document(self._document(number, line))
                    documents += 1
                    reason = self._skip_reason(record)
                    if reason:
                        skipped[reason] += 1
                        if len(examples) < EXAMPLES:
                            examples.append(f"line {number} ({record.dcc or 'no submission'}/{record.local_id or 'no local_id'})")
                        continue
                    # First document wins, like find_one over a duplicated local_id.
                    by_key.setdefault((record.dcc, record.local_id), record)
            by_dcc: dict[str, builtins.list[FileRecord]] = {}
            for record in sorted(by_key.values(), key=lambda r: r.local_id):
                by_dcc.setdefault(record.dcc, []).append(record)
            self._by_key, self._by_dcc, self._loaded = by_key, by_dcc, stamp
            self._report = LoadReport(documents, dict(skipped), tuple(examples))
            self._report.log(self._where.rsplit("/", 1)[-1], self.dccs)

    def _document(self, number: int, line: str) -> dict[str, Any]:
        try:
            doc = json.loads(line)
        except json.JSONDecodeError as exc:
            raise CatalogError(
                f"Line {number} of the catalog file {self._where} is not JSON ({exc.msg}); fix or remove that line."
            ) from None
        if not isinstance(doc, dict):
            raise CatalogError(
                f"Line {number} of the catalog file {self._where} is not a JSON object; fix or remove that line."
            )
        return doc


class FileCatalog(JsonLinesCatalog):
    """A JSON Lines file on local disk (the embedded default)."""

    path: str

    @property
    def _where(self) -> str:
        return self.path

    def _stamp(self) -> Any:
        try:
            st = os.stat(self.path)
        except OSError as exc:
            raise self._unreadable(exc.strerror) from None
        return st.st_mtime, st.st_size

    @contextlib.contextmanager
    def _lines(self) -> Iterator[Iterable[str]]:
        try:
            fh = open(self.path, encoding="utf-8")
        except OSError as exc:  # e.g. a directory, or removed since the stat
            raise self._unreadable(exc.strerror) from None
        with fh:
            yield fh

    def _unreadable(self, why: str | None) -> CatalogError:
        return CatalogError(
            f"The catalog file {self.path} cannot be read ({why}); "
            "set CFDB_CATALOG to a JSON Lines file, an s3:// snapshot or a mongodb:// URI."
        )


class S3Catalog(JsonLinesCatalog):
    """A JSON Lines snapshot in S3 (``s3://bucket/key``): production without MongoDB. Reloaded when
    its ETag changes, looked at no more than every ``refresh_s`` seconds."""

    bucket: str
    key: str
    endpoint_url: str | None = None
    refresh_s: float = 60.0

    _client: Any = PrivateAttr(default=None)
    _checked: tuple[float, Any] | None = PrivateAttr(default=None)

    @property
    def _where(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    @property
    def client(self):
        if self._client is None:
            import boto3

            self._client = boto3.client("s3", endpoint_url=self.endpoint_url)
        return self._client

    def _stamp(self) -> Any:
        now = time.monotonic()
        if self._checked and now - self._checked[0] < self.refresh_s:
            return self._checked[1]
        try:
            etag = self.client.head_object(Bucket=self.bucket, Key=self.key)["ETag"]
        except Exception as exc:  # noqa: BLE001 - botocore raises many client and connection errors
            raise self._unreadable(exc) from None
        self._checked = (now, etag)
        return etag

    @contextlib.contextmanager
    def _lines(self) -> Iterator[Iterable[str]]:
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self.key)["Body"]
        except Exception as exc:  # noqa: BLE001
            raise self._unreadable(exc) from None
        try:
            yield (line.decode("utf-8") for line in body.iter_lines())
        finally:
            body.close()

    def _unreadable(self, exc: Exception) -> CatalogError:
        code = getattr(exc, "response", {}).get("Error", {}).get("Code")
        return CatalogError(
            f"The catalog snapshot {self._where} cannot be read ({code or type(exc).__name__}); check "
            "CFDB_CATALOG, AWS_ENDPOINT_URL and the credentials."
        )
