"""The protocol that answers plain artifact reads itself (serve/fast_protocol.py) puts the same
bytes on the wire, and the same access-log line, as uvicorn's own httptools protocol: for the
requests it answers and for those it leaves to uvicorn. Two real uvicorn servers on loopback, raw
HTTP/1.x over sockets, every byte compared but the Date header."""

from __future__ import annotations

import logging
import re
import socket

import pytest

from serve.app import create_app
from serve.fast_protocol import ArtifactProtocol
from tests.helpers import LiveAPI, build_artifacts


class Counting(ArtifactProtocol):
    """Counts the requests this protocol answered itself."""

    answered = 0

    def _answer_directly(self) -> bool:
        answered = super()._answer_directly()
        Counting.answered += answered
        return answered


def exchange(api: LiveAPI, raw: bytes) -> bytes:
    """Send ``raw`` (one or more requests, the last asking to close) and read to the end."""
    with socket.create_connection(("127.0.0.1", api.port), timeout=10) as sock:
        sock.sendall(raw)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return re.sub(rb"\r\ndate: [^\r]*", b"", b"".join(chunks))


class AccessLines(logging.Handler):
    """uvicorn's access log lines, the client's port left out (each server has its own clients)."""

    def __init__(self):
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(re.sub(r"^127\.0\.0\.1:\d+", "127.0.0.1", record.getMessage()))


@pytest.fixture
def servers(settings, store):
    access = logging.getLogger("uvicorn.access")
    ours = LiveAPI(create_app(settings), http=Counting, log_level="info")
    uvicorns = LiveAPI(create_app(settings), http="httptools", log_level="info")
    with ours, uvicorns:
        lines = AccessLines()
        access.addHandler(lines)  # after start-up: uvicorn configures its loggers when it starts
        try:
            yield ours, uvicorns, lines
        finally:
            access.removeHandler(lines)


def _request(method: str, path: str, *headers: str, version: str = "1.1", close: bool = True) -> bytes:
    lines = [f"{method} {path} HTTP/{version}", "Host: 127.0.0.1", *headers]
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


ORIGIN = "Origin: https://gosling.example"


def _compare(ours: LiveAPI, uvicorns: LiveAPI, lines: AccessLines, raw: bytes) -> bytes:
    before = len(lines.lines)
    answer = exchange(ours, raw)
    logged = lines.lines[before:]
    assert answer == exchange(uvicorns, raw), raw
    assert logged == lines.lines[before + len(logged):], raw  # the same access-log lines
    return answer


def test_plain_reads_are_answered_here_byte_for_byte_as_uvicorn_answers_them(servers, settings):
    ours, uvicorns, lines = servers
    key, _ = build_artifacts(settings, "encode", "ENCFF000BED")
    data, index = f"/artifacts/{key}/data.bed.gz", f"/artifacts/{key}/data.bed.gz.tbi"
    # Kept alive: the last request on each connection asks to close (that one goes to uvicorn).
    cases = [
        (_request("GET", data, "Range: bytes=0-99", close=False), 1),
        (_request("GET", data, "Range: bytes=100-", ORIGIN, close=False), 1),
        (_request("HEAD", data, "Range: bytes=5-20", ORIGIN, close=False), 1),
        (_request("GET", f"{index}?v=1", close=False), 1),
        # Three on one connection, sent at once: two answered here, in order, the last by uvicorn.
        (_request("GET", data, "Range: bytes=0-9", close=False) + _request("GET", index, "Range: bytes=-20",
         close=False) + _request("GET", data, "Range: bytes=10-19"), 2),
    ]
    for raw, answered_here in cases:
        raw = raw if raw.endswith(b"Connection: close\r\n\r\n") else raw + _request("GET", "/health")
        Counting.answered = 0
        answer = _compare(ours, uvicorns, lines, raw)
        assert answer.startswith((b"HTTP/1.1 206", b"HTTP/1.1 200")), answer[:200]
        assert Counting.answered == answered_here, raw


def test_everything_else_takes_uvicorns_path_and_gives_the_same_bytes(servers, settings, store):
    ours, uvicorns, lines = servers
    key, _ = build_artifacts(settings, "encode", "ENCFF000BED")
    data = f"/artifacts/{key}/data.bed.gz"
    others = [
        _request("GET", data, "Range: bytes=0-9"),  # Connection: close
        _request("GET", data, "Range: bytes=0-9", version="1.0", close=False),
        _request("GET", data, f"If-None-Match: \"{store.manifest(key).data.sha256}\""),  # 304
        _request("GET", data, "Range: bytes=99999999-"),  # unsatisfiable: 416
        _request("POST", data, "Content-Length: 0"),  # 405
        _request("OPTIONS", data, ORIGIN, "Access-Control-Request-Method: GET"),  # CORS preflight
        _request("GET", data.replace("data", "d%61ta"), "Range: bytes=0-9"),  # percent-encoded
        _request("GET", f"/artifacts/{'0' * 32}/data.bed.gz"),  # 404
        _request("GET", "/files/encode/ENCFF000BED"),
    ]
    Counting.answered = 0
    for raw in others:
        _compare(ours, uvicorns, lines, raw)
    assert Counting.answered == 0
