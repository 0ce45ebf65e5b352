"""The browsers' hot path, in raw ASGI: GET/HEAD /artifacts/{cache_key}/{name} on a local store,
answered without routing, Request objects or a file open per request.

A genome browser reads an artifact as many small ranges (the index, the header, one 64 KiB tile
after another), so per-request overhead is what bounds serving (bench/serve.py). This layer answers
only the plain cases (200 and 206 of at most 1 MiB, HEAD) with exactly the headers the full app sends
(tests/serve/test_fast_artifacts.py compares them); every other request (conditional ones,
malformed or unsatisfiable ranges, unknown artifacts, large bodies, other paths) goes to the full
app, which owns the HTTP contract. It sits inside the CORS middleware, so CORS is the same code.

Per artifact it keeps, for a few seconds, an open file and the response headers: an artifact is
immutable under its content-addressed URL, so a cached entry can only be stale by having been
deleted (housekeeping), and is then served for at most ``TTL_S`` more seconds.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from starlette.types import ASGIApp, Receive, Scope, Send

from cfdb_assets.keys import is_cache_key
from resources import LocalStore, MalformedRange, RangeNotSatisfiable, StoreError
from resources.ranges import content_range, parse_byte_range
from serve.files import Files
from serve.responses import IMMUTABLE, OCTET, SMALL_BODY, validators

__all__ = ["ArtifactFastPath"]

PREFIX = "/artifacts/"
TTL_S = 10.0
MAX_OPEN = 128
# Request headers that make an answer conditional: left to the full app.
_CONDITIONAL = (b"if-none-match", b"if-range", b"if-match", b"if-modified-since", b"if-unmodified-since")


@dataclass
class _Open:
    fd: int
    size: int
    headers: list[tuple[bytes, bytes]]  # ETag, Last-Modified, Cache-Control, in the full app's order
    expires: float


class ArtifactFastPath:
    """Wraps the app; answers plain artifact reads from a local store itself."""

    def __init__(self, app: ASGIApp, files: Files, store: LocalStore):
        self.app, self.files, self.store = app, files, store
        self._open: dict[tuple[str, str], _Open] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        answer = self.answer(scope)
        if answer is None:
            return await self.app(scope, receive, send)
        status, headers, body = answer
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def answer(self, scope: Scope) -> tuple[int, list, bytes] | None:
        """Status, headers and body of a plain read this layer answers itself (the same answer
        serve/fast_protocol.py writes without ASGI); None for every other request."""
        if scope["type"] != "http" or scope["method"] not in ("GET", "HEAD") or not scope["path"].startswith(PREFIX):
            return None
        key, _, name = scope["path"][len(PREFIX):].partition("/")
        entry = self._entry(key, name)
        if entry is None:
            return None
        byte_range = None
        for header, value in scope["headers"]:
            if header in _CONDITIONAL:
                return None
            if header == b"range":
                try:
                    byte_range = parse_byte_range(value.decode("latin-1"))
                except MalformedRange:
                    return None
        start, end, status = 0, entry.size, 200
        headers = [(b"accept-ranges", b"bytes"), *entry.headers]
        if byte_range is not None:
            try:
                start, end = byte_range.resolve(entry.size)
            except RangeNotSatisfiable:
                return None
            status = 206
            headers.append((b"content-range", content_range(start, end, entry.size).encode()))
        if end - start > SMALL_BODY:
            return None  # streamed by the full app
        headers.append((b"content-length", str(end - start).encode()))
        headers.append((b"content-type", OCTET.encode()))
        if scope["method"] == "HEAD":
            return status, headers, b""
        try:
            body = os.pread(entry.fd, end - start, start)
        except OSError:
            body = b""
        if len(body) != end - start:
            self._close((key, name))  # the file changed under us: let the full app decide
            return None
        return status, headers, body

    def _entry(self, key: str, name: str) -> _Open | None:
        now = time.monotonic()
        entry = self._open.get((key, name))
        if entry is not None and entry.expires > now:
            return entry
        if entry is not None:
            self._close((key, name))
        if not is_cache_key(key) or "/" in name:
            return None
        manifest = self.files.manifest(key)
        if manifest is None or manifest.artifact(name) is None:
            return None
        try:
            fd = os.open(self.store.path(key, name), os.O_RDONLY | os.O_CLOEXEC)
        except (OSError, StoreError):
            return None  # missing: the full app answers 404 and forgets the manifest
        if len(self._open) >= MAX_OPEN:
            for stale in list(self._open):
                self._close(stale)
        headers = {**validators(manifest, name), "Cache-Control": IMMUTABLE}
        entry = _Open(fd, os.fstat(fd).st_size, [(k.lower().encode(), v.encode()) for k, v in headers.items()],
                      now + TTL_S)
        self._open[(key, name)] = entry
        return entry

    def _close(self, item: tuple[str, str]) -> None:
        entry = self._open.pop(item, None)
        if entry is not None:
            os.close(entry.fd)
