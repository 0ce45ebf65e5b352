"""The Starlette app: /data, /index, /jobs, /files, /artifacts.

``create_app`` builds resources from Settings (or takes them, for tests), checks them once, and wraps
everything, error handlers included, in CORS from the outside.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from email.utils import format_datetime
from urllib.parse import quote, urlsplit
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp

from cfdb_assets.formats import PASSTHROUGH, RAW
from cfdb_assets.keys import is_cache_key
from resources import (
    ArtifactMissing,
    ArtifactStore,
    Catalog,
    Ledger,
    LocalStore,
    S3Store,
    Settings,
    SourceFetcher,
)
from resources.fetcher import UpstreamRangeNotSatisfiable
from resources.wiring import adapters
from serve.errors import EXCEPTION_HANDLERS, HTTPProblem
from serve.files import Files
from serve.openapi import openapi
from serve.ranges import MalformedRange, MultipleRanges, RangeNotSatisfiable, content_range, parse_range

__all__ = ["create_app"]

log = logging.getLogger("cfdb.serve")
OCTET = "application/octet-stream"
EXPOSED = ["Content-Range", "Content-Length", "Accept-Ranges", "ETag", "Location", "Retry-After"]
RETRY_AFTER_202 = "5"
IMMUTABLE = "public, max-age=31536000, immutable"
SMALL_BODY = 1024 * 1024
ANY_SIZE = 10**21  # larger than any 20-digit range bound: checks a Range's syntax alone
JOB_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _byte_response(
    request: Request,
    size: int,
    open_range,  # (start, end) -> Iterator[bytes]; must raise before yielding on a missing object
    media_type: str,
    headers: dict[str, str] | None = None,
) -> Response:
    """200 / 206 / 416 / 400 for a byte source of known size, HEAD without a body.

    With an ``ETag`` in ``headers``, ``If-Range`` is honoured: a Range whose If-Range does not match
    gets the whole file (200), as RFC 9110 asks."""
    headers = {"Accept-Ranges": "bytes", **(headers or {})}
    status, start, end = 200, 0, size
    range_header = request.headers.get("range")
    if_range = request.headers.get("if-range")
    if range_header and if_range is not None and if_range.strip() != headers.get("ETag"):
        range_header = None
    span = _requested_range(range_header, size, headers) if range_header else None
    if span:
        start, end = span
        status = 206
        headers["Content-Range"] = content_range(start, end, size)
    headers["Content-Length"] = str(end - start)
    if request.method == "HEAD":
        return Response(status_code=status, headers=headers, media_type=media_type)
    if end - start <= SMALL_BODY:
        # A browser's typical read (index, header, 64 KiB tile): one ASGI message, no streaming.
        body = b"".join(open_range(start, end)) if end > start else b""
        return Response(body, status_code=status, headers=headers, media_type=media_type)
    return StreamingResponse(open_range(start, end), status_code=status, headers=headers, media_type=media_type)


def _requested_range(header: str, size: int, headers: dict[str, str]) -> tuple[int, int] | None:
    """The half-open span a Range header asks for; None for a multi-range (answered whole, 200);
    400 when malformed, 416 (with ``Content-Range: bytes */size``) when it starts past the end."""
    try:
        return parse_range(header, size)
    except MultipleRanges:
        return None
    except MalformedRange as exc:
        raise HTTPProblem(400, str(exc)) from None
    except RangeNotSatisfiable as exc:
        raise HTTPProblem(416, str(exc), headers={**headers, "Content-Range": f"bytes */{exc.size}"}) from None


def create_app(
    settings: Settings | None = None,
    *,
    catalog: Catalog | None = None,
    store: ArtifactStore | None = None,
    ledger: Ledger | None = None,
    fetcher: SourceFetcher | None = None,
) -> ASGIApp:
    """The ASGI app. Resources default to those the Settings name; all are checked here, once."""
    settings = settings or Settings.from_environ()
    default = adapters(settings)
    catalog = catalog or default["catalog"]
    store = store or default["store"]
    ledger = ledger or default["ledger"]
    fetcher = fetcher or default["fetcher"]
    for resource in (catalog, store, ledger):
        resource.check()  # fail loudly at startup rather than answering 404s / 503s later
    files = Files(settings, catalog, store, ledger)

    def serve_artifact(request: Request, key: str, manifest: dict, name: str, immutable: bool) -> Response:
        """An artifact of a ready set: strong ETag from its sha256; on the content-addressed URL
        also immutable caching and 304s."""
        headers = _validators(manifest, name)
        if immutable:
            headers["Cache-Control"] = IMMUTABLE
            if _matches(request.headers.get("if-none-match"), headers.get("ETag")):
                return Response(status_code=304, headers=headers)
        size = store.size(key, name)
        return _byte_response(request, size, lambda s, e: store.iter_range(key, name, s, e), OCTET, headers)

    def serve_upstream(request: Request, url: str, filename: str | None, media_type: str) -> Response:
        """Proxy upstream bytes. The upstream is opened before answering, so its failure is a
        502/504 with a sentence, never a truncated 200; an upstream ignoring Range is a 502."""
        headers = {"Content-Disposition": _attachment(filename or "file")}
        header = request.headers.get("range")
        # The syntax first (400 when malformed); a multi-range is answered whole (200).
        if header and _requested_range(header, ANY_SIZE, {}) is None:
            header = None
        if urlsplit(url).scheme == "file":
            size = fetcher.size(url)
            span = _requested_range(header, size, {}) if header else None
            if request.method == "HEAD" and span is None:
                return Response(status_code=200, headers={"Accept-Ranges": "bytes", "Content-Length": str(size), **headers},
                                media_type=media_type)
            body = fetcher.open(url, *span) if span else fetcher.open(url)
            return _upstream_response(request, body, size, media_type, headers)
        if not header and request.method == "HEAD":  # headers only: a HEAD upstream, never its bytes
            size = fetcher.size(url)
            length = {} if size is None else {"Content-Length": str(size)}
            return Response(status_code=200, headers={"Accept-Ranges": "bytes", **length, **headers}, media_type=media_type)
        try:
            body = fetcher.open_range(url, header)
        except UpstreamRangeNotSatisfiable as exc:
            total = "*" if exc.size is None else str(exc.size)
            raise HTTPProblem(416, str(exc), headers={"Content-Range": f"bytes */{total}"}) from None
        return _upstream_response(request, body, body.size, media_type, headers)

    def processed(request: Request, kind: str) -> Response:
        """/data and /index: hit → bytes; GET miss → 202 + job; HEAD miss → 404."""
        dcc, local_id = request.path_params["dcc"], request.path_params["local_id"]
        raw = _raw(request)
        record = files.lookup(dcc, local_id, need_access_url=(kind == "data"))
        plan = files.plan(record)
        if kind == "index" and (raw or plan.route.family in (PASSTHROUGH, RAW)):
            # The DCC's own index, for files we do not process. A processed file's index is always
            # ours: it is built from, and bound to, the data /data serves.
            sidecar = files.sidecar(record)
            if sidecar:
                return serve_upstream(request, sidecar.url, sidecar.filename, OCTET)
            detail = "No upstream index sidecar available" if raw else "No index file available for this file format"
            raise HTTPProblem(404, detail)
        if kind == "data" and (raw or plan.route.family in (PASSTHROUGH, RAW)):
            return serve_upstream(request, record.access_url, record.filename, plan.route.media_type)
        if plan.cache_key is None:
            raise HTTPProblem(422, f"{plan.refusal} Add ?raw=true for the upstream file.")
        manifest = files.manifest(plan.cache_key)
        if manifest is not None:
            try:
                name = manifest["artifacts"][kind]["name"]
                return serve_artifact(request, plan.cache_key, manifest, name, immutable=False)
            except ArtifactMissing:
                log.warning("Artifact %s vanished after lookup; requesting a rebuild.", plan.cache_key)
                files.forget(plan.cache_key)
        if request.method == "HEAD":
            what = "artifact" if kind == "data" else "index"
            raise HTTPProblem(
                404,
                f"Processed {what} not yet available. Issue a GET to trigger preprocessing, "
                f"or add ?raw=true for the upstream {'file' if kind == 'data' else 'sidecar'}.",
            )
        job, _created = files.request(record, plan)
        if job.state == "failed":
            raise files.failed_answer(job)
        return _accepted(job)

    async def data(request: Request) -> Response:
        return await _threaded(processed, request, "data")

    async def index(request: Request) -> Response:
        return await _threaded(processed, request, "index")

    def _status(request: Request, kind: str) -> Response:
        record = files.lookup(request.path_params["dcc"], request.path_params["local_id"], need_access_url=kind == "data")
        fs = files.state(record)
        if fs.state == "passthrough":
            if kind == "index" and files.sidecar(record) is None:
                raise HTTPProblem(404, "No index file available for this file format")
            return JSONResponse({"ready": True})
        return JSONResponse({"ready": fs.state == "ready"})

    async def data_status(request: Request) -> Response:
        return await _threaded(_status, request, "data")

    async def index_status(request: Request) -> Response:
        return await _threaded(_status, request, "index")

    def _job(request: Request) -> Response:
        job_id = request.path_params["job_id"]
        job = ledger.job(job_id) if JOB_ID.fullmatch(job_id) else None
        if job is None:
            raise HTTPProblem(404, "Job not found")
        return JSONResponse(files.job_view(job))

    async def jobs(request: Request) -> Response:
        return await _threaded(_job, request)

    def _describe(request: Request) -> Response:
        record = files.lookup(request.path_params["dcc"], request.path_params["local_id"])
        fs = files.state(record)
        prepare = request.method == "POST" or request.query_params.get("prepare", "").lower() == "true"
        if prepare and fs.state in ("missing", "failed"):
            job, _ = files.request(record, fs.plan)
            if job.state == "failed":
                raise files.failed_answer(job)
            fs = files.state(record)
            body = files.file_view(fs)
            return JSONResponse(body, 202, headers={"Location": f"/jobs/{job.job_id}", "Retry-After": RETRY_AFTER_202})
        return JSONResponse(files.file_view(fs))

    async def describe(request: Request) -> Response:
        return await _threaded(_describe, request)

    def _list(request: Request) -> Response:
        dcc = request.query_params.get("dcc", "").strip().lower() or None
        if dcc is not None and dcc not in settings.dccs:
            raise HTTPProblem(400, f"Unknown DCC '{dcc}'. Valid DCCs: {', '.join(settings.dccs)}")
        try:
            limit = int(request.query_params.get("limit", "50"))
        except ValueError:
            raise HTTPProblem(400, "limit must be a whole number from 1 to 500.") from None
        if not 1 <= limit <= 500:
            raise HTTPProblem(400, "limit must be a whole number from 1 to 500.")
        position = _decode_cursor(request.query_params.get("cursor"))
        dccs = [dcc] if dcc else list(settings.dccs)
        if position and position[0] in dccs:
            dccs = dccs[dccs.index(position[0]) :]
        records, after = [], position[1] if position else None
        for name in dccs:
            records += catalog.list(name, limit - len(records), after if position and name == position[0] else None)
            if len(records) >= limit:
                break
        next_cursor = _encode_cursor(records[-1].dcc, records[-1].local_id) if len(records) == limit else None
        return JSONResponse(
            {"files": [files.file_view(fs) for fs in files.states(records)], "next_cursor": next_cursor}
        )

    async def listing(request: Request) -> Response:
        return await _threaded(_list, request)

    def _artifact(request: Request) -> Response:
        key, name = request.path_params["cache_key"], request.path_params["name"]
        if not is_cache_key(key):
            raise HTTPProblem(404, "Artifact not found")
        manifest = files.manifest(key)
        names = {a["name"] for a in manifest["artifacts"].values()} if manifest else set()
        if name not in names:
            raise HTTPProblem(404, "Artifact not found; GET /files/{dcc}/{local_id} tells when it is ready.")
        if redirect:
            # Bytes straight from S3: each range then pays a redirect round trip, and the bucket
            # needs a CORS rule (README, "Serving from S3").
            return Response(status_code=307, headers={"Location": store.presigned_url(key, name), "Cache-Control": "no-store"})
        try:
            return serve_artifact(request, key, manifest, name, immutable=True)
        except ArtifactMissing:
            files.forget(key)
            raise HTTPProblem(404, "Artifact not found") from None

    local = isinstance(store, LocalStore)
    redirect = settings.s3_redirect and isinstance(store, S3Store)

    async def artifact(request: Request) -> Response:
        # The browsers' hot path. A local artifact read is a page-cache read of at most 1 MiB (larger
        # ranges stream from a thread), cheaper inline than a thread hop; S3 calls always leave the loop.
        if local:
            return _artifact(request)
        return await _threaded(_artifact, request)

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    document = openapi()

    async def openapi_json(request: Request) -> Response:
        return JSONResponse(document)

    routes = [
        Route("/health", health, methods=["GET"]),
        Route("/openapi.json", openapi_json, methods=["GET"]),
        Route("/data/{dcc}/{local_id}/status", data_status, methods=["GET"]),
        Route("/data/{dcc}/{local_id}", data, methods=["GET", "HEAD"]),
        Route("/index/{dcc}/{local_id}/status", index_status, methods=["GET"]),
        Route("/index/{dcc}/{local_id}", index, methods=["GET", "HEAD"]),
        Route("/jobs/{job_id}", jobs, methods=["GET"]),
        Route("/files", listing, methods=["GET"]),
        Route("/files/{dcc}/{local_id}", describe, methods=["GET", "POST"]),
        Route("/artifacts/{cache_key}/{name}", artifact, methods=["GET", "HEAD"]),
    ]
    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        files.draining = True  # shutting down: requests still in flight get 503 for new work

    app = Starlette(routes=routes, exception_handlers=EXCEPTION_HANDLERS, lifespan=lifespan)
    app.state.files = files
    return CORSMiddleware(
        app,
        allow_origins=[settings.cors_origin],
        allow_methods=["GET", "HEAD", "POST", "OPTIONS"],
        allow_headers=["Range", "Authorization", "If-None-Match", "If-Range"],
        expose_headers=EXPOSED,
        max_age=86400,
    )


def _attachment(filename: str) -> str:
    """Content-Disposition for any catalog filename: an ASCII fallback plus the UTF-8 form (header
    values are Latin-1, and a CR/LF or quote must never reach the header)."""
    clean = "".join(c for c in filename if c.isprintable())
    ascii_name = clean.encode("ascii", "replace").decode().replace("?", "_").replace('"', "_").replace("\\", "_")
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(clean, safe='')}"


def _validators(manifest: dict, name: str) -> dict[str, str]:
    """ETag (the artifact's sha256, from the manifest) and Last-Modified (when the set was built)."""
    headers = {}
    entry = next((a for a in manifest["artifacts"].values() if a.get("name") == name), {})
    if entry.get("sha256"):
        headers["ETag"] = f'"{entry["sha256"]}"'
    created = manifest.get("created_at")
    if created:
        with contextlib.suppress(ValueError):
            when = datetime.strptime(created, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
            headers["Last-Modified"] = format_datetime(when, usegmt=True)
    return headers


def _matches(if_none_match: str | None, etag: str | None) -> bool:
    if not if_none_match or not etag:
        return False
    tags = [t.strip().removeprefix("W/") for t in if_none_match.split(",")]
    return "*" in tags or etag in tags


def _raw(request: Request) -> bool:
    value = request.query_params.get("raw", "false").strip().lower()
    if value not in ("true", "false", "1", "0"):
        raise HTTPProblem(400, "raw must be true or false.")
    return value in ("true", "1")


def _accepted(job) -> JSONResponse:
    status = "running" if job.state == "running" else "pending"
    return JSONResponse(
        {"job_id": job.job_id, "status": status},
        202,
        headers={"Location": f"/jobs/{job.job_id}", "Retry-After": RETRY_AFTER_202},
    )


def _upstream_response(request: Request, body, size: int | None, media_type: str, headers: dict[str, str]) -> Response:
    headers = {"Accept-Ranges": "bytes", **headers}
    if body.status == 206:
        headers["Content-Range"] = content_range(body.start, body.end, size)
        headers["Content-Length"] = str(body.end - body.start)
    elif size is not None:
        headers["Content-Length"] = str(size)
    if request.method == "HEAD":
        body.close()
        return Response(status_code=body.status, headers=headers, media_type=media_type)
    return StreamingResponse(_closing(body), status_code=body.status, headers=headers, media_type=media_type)


def _closing(body) -> Iterator[bytes]:
    try:
        yield from body.chunks
    finally:
        body.close()


def _encode_cursor(dcc: str, local_id: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([dcc, local_id]).encode()).decode()


def _decode_cursor(cursor: str | None) -> tuple[str, str] | None:
    if not cursor:
        return None
    try:
        dcc, local_id = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        return str(dcc), str(local_id)
    except (ValueError, TypeError):
        raise HTTPProblem(400, "Invalid cursor; use the next_cursor of a previous /files answer.") from None


async def _threaded(fn, *args: Any) -> Response:
    """Run blocking resource calls (SQL, Mongo, disk) off the event loop."""
    return await run_in_threadpool(fn, *args)
