"""Byte-serving responses: ranges (200 / 206 / 416 / 400), stored artifacts with their validators,
and proxied upstream bytes. Every failure is decided before the first header is sent."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from email.utils import format_datetime
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from resources import (
    ArtifactStore,
    ByteRange,
    Job,
    JobState,
    MalformedRange,
    Manifest,
    RangeNotSatisfiable,
    SourceFetcher,
    Upstream,
)
from resources.ranges import content_range, parse_byte_range
from serve.errors import HTTPProblem

__all__ = ["IMMUTABLE", "OCTET", "RETRY_AFTER_202", "SMALL_BODY", "accepted", "artifact_response", "upstream_response", "validators"]

OCTET = "application/octet-stream"
RETRY_AFTER_202 = "5"
IMMUTABLE = "public, max-age=31536000, immutable"
SMALL_BODY = 1024 * 1024


def requested_range(request: Request, headers: dict[str, str] | None = None) -> ByteRange | None:
    """The single range a request asks for: None without one, for a multi-range (answered whole)
    and, given our ``headers``, when an ``If-Range`` does not match their ETag (RFC 9110: the whole
    file); 400 when malformed."""
    header = request.headers.get("range")
    if not header:
        return None
    if_range = request.headers.get("if-range")
    if headers is not None and if_range is not None and if_range.strip() != headers.get("ETag"):
        return None
    try:
        return parse_byte_range(header)
    except MalformedRange as exc:
        raise HTTPProblem(400, str(exc)) from None


def not_satisfiable(size: int | None, detail: str, headers: dict[str, str] | None = None) -> HTTPProblem:
    """416 with ``Content-Range: bytes */size`` (``*`` when the size is unknown)."""
    total = "*" if size is None else str(size)
    return HTTPProblem(416, detail, headers={**(headers or {}), "Content-Range": f"bytes */{total}"})


def byte_response(
    request: Request,
    size: int,
    open_span: Callable[[int, int], Iterator[bytes]],  # must raise before yielding on a missing object
    media_type: str,
    headers: dict[str, str],
) -> Response:
    """200 / 206 / 416 for a byte source of known size, HEAD without a body."""
    headers = {"Accept-Ranges": "bytes", **headers}
    status, start, end = 200, 0, size
    byte_range = requested_range(request, headers)
    if byte_range:
        try:
            start, end = byte_range.resolve(size)
        except RangeNotSatisfiable as exc:
            raise not_satisfiable(size, str(exc), headers) from None
        status = 206
        headers["Content-Range"] = content_range(start, end, size)
    headers["Content-Length"] = str(end - start)
    if request.method == "HEAD":
        return Response(status_code=status, headers=headers, media_type=media_type)
    if end - start <= SMALL_BODY:
        # A browser's typical read (index, header, 64 KiB tile): one ASGI message, no streaming.
        body = b"".join(open_span(start, end)) if end > start else b""
        return Response(body, status_code=status, headers=headers, media_type=media_type)
    return StreamingResponse(open_span(start, end), status_code=status, headers=headers, media_type=media_type)


def artifact_response(
    request: Request, store: ArtifactStore, manifest: Manifest, name: str, immutable: bool
) -> Response:
    """One artifact of a ready set: a strong ETag from its sha256; on the content-addressed URL also
    immutable caching and 304s. Raises ArtifactMissing when the file vanished from the store."""
    key = manifest.cache_key
    headers = validators(manifest, name)
    if immutable:
        headers["Cache-Control"] = IMMUTABLE
        if _matches(request.headers.get("if-none-match"), headers.get("ETag")):
            return Response(status_code=304, headers=headers)
    size = store.size(key, name)
    return byte_response(request, size, lambda s, e: store.iter_range(key, name, s, e), OCTET, headers)


def upstream_response(
    request: Request, fetcher: SourceFetcher, url: str, filename: str | None, media_type: str
) -> Response:
    """Proxy upstream bytes. The upstream is opened before answering, so its failure is a
    FetchError (mapped to 502/504/404/416 in ``serve.errors``), never a truncated 200."""
    headers = {"Accept-Ranges": "bytes", "Content-Disposition": _attachment(filename or "file")}
    byte_range = requested_range(request)
    if request.method == "HEAD" and byte_range is None:  # headers only: never the upstream's bytes
        size = fetcher.size(url)
        length = {} if size is None else {"Content-Length": str(size)}
        return Response(status_code=200, headers={**headers, **length}, media_type=media_type)
    body = fetcher.open_range(url, byte_range)
    if body.status == 206:
        assert body.end is not None
        headers["Content-Range"] = content_range(body.start, body.end, body.size)
        headers["Content-Length"] = str(body.end - body.start)
    elif body.size is not None:
        headers["Content-Length"] = str(body.size)
    if request.method == "HEAD":
        body.close()
        return Response(status_code=body.status, headers=headers, media_type=media_type)
    return StreamingResponse(_closing(body), status_code=body.status, headers=headers, media_type=media_type)


def accepted(job: Job) -> JSONResponse:
    """202 for a file being prepared: the job to poll, and when to come back."""
    status = "running" if job.state == JobState.RUNNING else "pending"
    return JSONResponse(
        {"job_id": job.job_id, "status": status},
        202,
        headers={"Location": f"/jobs/{job.job_id}", "Retry-After": RETRY_AFTER_202},
    )


def _closing(body: Upstream) -> Iterator[bytes]:
    try:
        yield from body.chunks
    finally:
        body.close()


def _attachment(filename: str) -> str:
    """Content-Disposition for any catalog filename: an ASCII fallback plus the UTF-8 form (header
    values are Latin-1, and a CR/LF or quote must never reach the header)."""
    clean = "".join(c for c in filename if c.isprintable())
    ascii_name = clean.encode("ascii", "replace").decode().replace("?", "_").replace('"', "_").replace("\\", "_")
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(clean, safe='')}"


def validators(manifest: Manifest, name: str) -> dict[str, str]:
    """ETag (the artifact's sha256, from the manifest) and Last-Modified (when the set was built)."""
    headers = {}
    artifact = manifest.artifact(name)
    if artifact and artifact.sha256:
        headers["ETag"] = f'"{artifact.sha256}"'
    with contextlib.suppress(ValueError):
        when = datetime.strptime(manifest.created_at, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        headers["Last-Modified"] = format_datetime(when, usegmt=True)
    return headers


def _matches(if_none_match: str | None, etag: str | None) -> bool:
    if not if_none_match or not etag:
        return False
    tags = [t.strip().removeprefix("W/") for t in if_none_match.split(",")]
    return "*" in tags or etag in tags
