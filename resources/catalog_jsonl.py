"""JSON Lines catalogs: a file on local disk (the embedded default) or a snapshot in S3.

The documents are indexed in memory as one immutable snapshot (``_Index``): records by (dcc,
local_id), and per DCC the records and their local_ids, both sorted by local_id, so a page is a
bisect and a slice. The first load is synchronous (``check`` at startup, or the first request).
After that, the request that notices a new stamp (file mtime and size, S3 ETag) starts one
background reload and every request keeps answering from the previous snapshot until the new one
replaces it in a single attribute assignment: a reader sees the old snapshot or the new one, never
a half-built one.

A reload that fails (a malformed line, an unreadable source) keeps the previous snapshot, logs the
CatalogError sentence once for that stamp and keeps it in ``reload_error()``. It is retried as soon
as the stamp changes again (the source was rewritten) and, for the same stamp, no sooner than
``reload_retry_s`` seconds later (a transient read error). ``check`` stays synchronous: it raises
what a reload of the current source would raise. A source that cannot even be stat'ed (a deleted
file, S3 HeadObject failing) is still a CatalogError on the request path, as before.
"""

from __future__ import annotations

import bisect
import builtins
import contextlib
import json
import logging
import os
import threading
import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from pydantic import PrivateAttr

from resources.catalog import EXAMPLES, Catalog, CatalogError, FileRecord, LoadReport

__all__ = ["FileCatalog", "JsonLinesCatalog", "S3Catalog"]

log = logging.getLogger("cfdb.catalog")


@dataclass(frozen=True)
class _Index:
    """One load of the source; never mutated once built (``list`` hands out slices)."""

    stamp: Any
    by_key: dict[tuple[str, str], FileRecord]
    by_dcc: dict[str, builtins.list[FileRecord]]  # sorted by local_id
    ids: dict[str, builtins.list[str]]  # by_dcc's local_ids, in the same order: what `after` bisects
    report: LoadReport


class JsonLinesCatalog(Catalog, ABC):
    """Catalog documents as JSON Lines, indexed in memory and reloaded when the source changes."""

    # How long a reload that failed waits before it is retried on an unchanged stamp.
    reload_retry_s: float = 30.0

    _index: _Index | None = PrivateAttr(default=None)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)  # loads, and starting a reload
    _reloader: threading.Thread | None = PrivateAttr(default=None)
    _failed: tuple[Any, float, str] | None = PrivateAttr(default=None)  # (stamp, when, sentence)

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
        index = self._index
        return index.report if index else None

    def reload_error(self) -> str | None:
        """Why the last reload failed (the previous records are still served), or None."""
        failed = self._failed
        return failed[2] if failed else None

    def wait_reloaded(self, timeout: float | None = None) -> bool:
        """Wait for a background reload in progress, if any; False if it is still running."""
        reloader = self._reloader
        if reloader is None:
            return True
        reloader.join(timeout)
        return not reloader.is_alive()

    def get(self, dcc: str, local_id: str) -> FileRecord | None:
        return self._current().by_key.get((dcc.strip().lower(), local_id))

    def list(self, dcc: str, limit: int, after: str | None = None) -> builtins.list[FileRecord]:
        index = self._current()
        name = dcc.strip().lower()
        records = index.by_dcc.get(name)
        if not records:
            return []
        start = 0 if after is None else bisect.bisect_right(index.ids[name], after)
        return records[start : start + limit]

    def check(self) -> None:
        """Load now, raising what the load raises (startup); waits for a background reload first."""
        with self._lock:  # held: no new reload starts; the one under way ends without it
            self.wait_reloaded()
            stamp = self._stamp()
            if self._index is None or self._index.stamp != stamp:
                try:
                    index = self._build(stamp)
                except CatalogError as exc:
                    if self._index is not None:
                        self._fail(stamp, exc)
                    raise
                self._install(index)

    # --- loading ----------------------------------------------------------------------------------

    def _current(self) -> _Index:
        """The snapshot to answer from: loaded here the first time, then reloaded in the background."""
        index = self._index
        if index is None:
            with self._lock:
                if self._index is None:  # not loaded by a concurrent first request meanwhile
                    self._install(self._build(self._stamp()))
                return self._index
        stamp = self._stamp()
        if stamp != index.stamp:
            self._start_reload(stamp)
        return index

    def _start_reload(self, stamp: Any) -> None:
        failed = self._failed
        if failed and failed[0] == stamp and time.monotonic() - failed[1] < self.reload_retry_s:
            return  # this very source failed a moment ago
        reloader = self._reloader
        if reloader is not None and reloader.is_alive():
            return  # one at a time; a newer stamp is picked up by a request after it ends
        if not self._lock.acquire(blocking=False):
            return  # `check` is loading, or another request is starting the reload: never wait here
        try:
            reloader = self._reloader
            if (reloader is not None and reloader.is_alive()) or self._index.stamp == stamp:
                return
            self._reloader = threading.Thread(
                target=self._reload, args=(stamp,), name=f"catalog-reload {self._where}", daemon=True
            )
            self._reloader.start()
        finally:
            self._lock.release()

    def _reload(self, stamp: Any) -> None:
        # Let the request that started this thread take the GIL back first (Thread.start waits for
        # the thread to run): without it, that request waits up to a switch interval or longer.
        time.sleep(0)
        try:
            index = self._build(stamp)
        except CatalogError as exc:
            self._fail(stamp, exc)
        except Exception as exc:  # noqa: BLE001 - a thread has no caller: log it, keep serving
            self._fail(stamp, CatalogError(f"The catalog {self._where} cannot be loaded ({type(exc).__name__}: {exc})."))
        else:
            self._install(index)

    def _install(self, index: _Index) -> None:
        self._index = index  # the swap: one assignment
        self._failed = None
        index.report.log(self._where.rsplit("/", 1)[-1], self.dccs)

    def _fail(self, stamp: Any, exc: CatalogError) -> None:
        sentence, failed = str(exc), self._failed
        if failed is None or failed[0] != stamp or failed[2] != sentence:
            log.error("Catalog %s not reloaded; still serving the previous load: %s", self._where, sentence)
        self._failed = (stamp, time.monotonic(), sentence)

    def _build(self, stamp: Any) -> _Index:
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
        ids = {dcc: [r.local_id for r in records] for dcc, records in by_dcc.items()}
        return _Index(stamp, by_key, by_dcc, ids, LoadReport(documents, dict(skipped), tuple(examples)))

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
