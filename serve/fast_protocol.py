"""uvicorn's httptools protocol, answering plain artifact reads in the parser's own callback:
``uvicorn serve.asgi:app --http serve.fast_protocol:ArtifactProtocol`` (scripts/run.sh, the image).

A genome browser reads an artifact as many 64 KiB ranges; per request, uvicorn's ASGI machinery
(a request cycle, its scope, an asyncio task, two writes) costs more than the read itself
(bench/serve.py). For a request that ``serve.fast_artifacts.ArtifactFastPath`` answers (a plain
200/206/HEAD of a local artifact: decided before anything is written), this class writes the
answer itself, in one write: uvicorn's default headers, the fast path's status, headers and body,
and the headers the CORS middleware's own ``send`` adds (Starlette's code, run once per Origin and
remembered), logged as uvicorn logs. tests/serve/test_fast_protocol.py compares every byte on the
wire and the access log with uvicorn's own protocol.

Everything else takes uvicorn's path: other methods and paths, HTTP/1.0, ``Connection: close``,
``Expect``, percent-encoded paths, forwarded headers, a request pipelined behind a response in
flight, a paused transport, any app stack other than [proxy headers →] CORS → fast path.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any

import httptools
from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.protocols.utils import get_client_addr, get_path_with_query_string

from serve.fast_artifacts import ArtifactFastPath

__all__ = ["ArtifactProtocol"]

_FORWARDED = (b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host")


class ArtifactProtocol(HttpToolsProtocol):
    """HttpToolsProtocol that answers the artifact fast path's requests without ASGI."""

    _answered = False  # the request being parsed was answered here: its body events are ignored

    def on_headers_complete(self) -> None:
        self._answered = self._answer_directly()
        if not self._answered:
            super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._answered:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if not self._answered:
            super().on_message_complete()

    def _answer_directly(self) -> bool:
        stack = _stack(self.app)
        parser = self.parser
        if (stack is None or self.limit_concurrency is not None or self.root_path or self.expect_100_continue
                or self.flow.write_paused or (self.cycle is not None and not self.cycle.response_complete)
                or parser.get_http_version() != "1.1" or not parser.should_keep_alive() or parser.should_upgrade()):
            return False
        method = parser.get_method()
        if method not in (b"GET", b"HEAD"):
            return False
        url = httptools.parse_url(self.url)
        if b"%" in url.path or (stack[0] and any(name in _FORWARDED for name, _ in self.headers)):
            return False
        scope = {
            "type": "http", "http_version": "1.1", "method": method.decode("ascii"), "scheme": self.scheme,
            "path": url.path.decode("ascii"), "raw_path": url.path, "query_string": url.query or b"",
            "root_path": "", "headers": self.headers, "client": self.client, "server": self.server,
        }
        _, cors, fast = stack
        answer = fast.answer(scope)
        if answer is None:
            return False
        status, headers, body = answer
        out = [STATUS_LINE[status]]
        for name, value in (*self.server_state.default_headers, *headers, *_cors_headers(cors, self.headers)):
            out += [name.lower(), b": ", value, b"\r\n"]
        out.append(b"\r\n")
        if scope["method"] != "HEAD":
            out.append(body)
        if self.access_log:
            self.access_logger.info('%s - "%s %s HTTP/%s" %d', get_client_addr(scope), scope["method"],
                                    get_path_with_query_string(scope), "1.1", status)
        self.transport.write(b"".join(out))
        # What uvicorn does when a response completes with nothing pipelined: count it, arm keep-alive.
        self.server_state.total_requests += 1
        self._unset_keepalive_if_required()
        self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive, self.timeout_keep_alive_handler)
        return True


def _stack(app: Any) -> tuple[bool, CORSMiddleware, ArtifactFastPath] | None:
    """(proxy headers in front?, the CORS middleware, the fast path) when the app is exactly that
    stack, so that answering here skips nothing else."""
    proxied = isinstance(app, ProxyHeadersMiddleware)
    cors = app.app if proxied else app
    if isinstance(cors, CORSMiddleware) and isinstance(cors.app, ArtifactFastPath):
        return proxied, cors, cors.app
    return None


def _cors_headers(cors: CORSMiddleware, request_headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The headers the CORS middleware's own ``send`` appends to a response without them (the fast
    path's never has any), for this request's Origin (the only request header that ``send`` reads);
    remembered per middleware and Origin."""
    origin = next((value for name, value in request_headers if name == b"origin"), None)
    key = (id(cors), origin)
    added = _CORS_ADDED.get(key)
    if added is None:
        sent: list[dict] = []

        async def collect(message: dict) -> None:
            sent.append(message)

        raw = [(b"origin", origin)] if origin is not None else []
        start = {"type": "http.response.start", "status": 200, "headers": []}
        _run_now(cors.send(start, send=collect, request_headers=Headers(raw=raw)))
        added = list(sent[0]["headers"])
        if len(_CORS_ADDED) >= 256:
            _CORS_ADDED.clear()
        _CORS_ADDED[key] = added
    return added


_CORS_ADDED: dict[tuple[int, bytes | None], list[tuple[bytes, bytes]]] = {}


def _run_now(coroutine: Coroutine) -> None:
    """Run a coroutine that never waits (CORS's ``send`` into a list) to its end."""
    try:
        coroutine.send(None)
    except StopIteration:
        return
    coroutine.close()
    raise RuntimeError("the CORS middleware's send waited; serve/fast_protocol.py cannot answer here")
