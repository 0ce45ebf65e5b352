"""The HTTP handlers: each parses the request, calls one method of ``Files`` and maps the result to a
response. Handlers that block are plain ``def``s: Starlette runs them in its threadpool."""

from __future__ import annotations

import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from cfdb_assets.keys import is_cache_key
from cfdb_assets.names import Stage
from resources import ArtifactMissing, ArtifactStore, Catalog, S3Store, SourceFetcher
from serve.contigs import ContigReader
from serve.errors import HTTPProblem
from serve.files import Files, Hit, Proxy
from serve.responses import RETRY_AFTER_202, accepted, artifact_response, upstream_response
from serve.viewer import Viewer

__all__ = ["Endpoints"]

log = logging.getLogger("cfdb.serve")


class Endpoints:
    """The routes of the API over one ``Files`` service."""

    def __init__(self, files: Files, catalog: Catalog, store: ArtifactStore, fetcher: SourceFetcher,
                 document: dict[str, Any], redirect: bool):
        self.files, self.catalog, self.store, self.fetcher = files, catalog, store, fetcher
        self.document = document
        self.redirect = redirect and isinstance(store, S3Store)  # 307 to presigned S3 URLs
        self.contig_reader = ContigReader(files, store, fetcher)
        self.viewer = Viewer(files.settings.dccs)

    def routes(self, inline_artifacts: bool) -> list[BaseRoute]:
        """The route table; ``inline_artifacts`` serves /artifacts on the event loop (local disk).
        The viewer's pages and static files (``serve.viewer``) come last."""
        artifact = self.artifact_inline if inline_artifacts else self.artifact
        return [
            Route("/health", self.health, methods=["GET"]),
            Route("/openapi.json", self.openapi, methods=["GET"]),
            Route("/data/{dcc}/{local_id}/status", self.data_status, methods=["GET"]),
            Route("/data/{dcc}/{local_id}", self.data, methods=["GET", "HEAD"]),
            Route("/index/{dcc}/{local_id}/status", self.index_status, methods=["GET"]),
            Route("/index/{dcc}/{local_id}", self.index, methods=["GET", "HEAD"]),
            Route("/jobs/{job_id}", self.job, methods=["GET"]),
            Route("/files", self.listing, methods=["GET"]),
            Route("/files/{dcc}/{local_id}", self.describe, methods=["GET", "POST"]),
            Route("/files/{dcc}/{local_id}/contigs", self.contigs, methods=["GET"]),
            Route("/artifacts/{cache_key}/{name}", artifact, methods=["GET", "HEAD"]),
            *self.viewer.routes(),
        ]

    def data(self, request: Request) -> Response:
        return self._processed(request, Stage.DATA)

    def index(self, request: Request) -> Response:
        return self._processed(request, Stage.INDEX)

    def _processed(self, request: Request, kind: Stage) -> Response:
        """/data and /index: hit → bytes; passthrough → upstream bytes; GET miss → 202 + job."""
        dcc, local_id = request.path_params["dcc"], request.path_params["local_id"]
        head = request.method == "HEAD"
        answer = self.files.answer(kind, dcc, local_id, _raw(request), head)
        if isinstance(answer, Proxy):
            return upstream_response(request, self.fetcher, answer.url, answer.filename, answer.media_type)
        if isinstance(answer, Hit):
            ready = answer.file
            assert ready.manifest is not None
            try:
                return artifact_response(request, self.store, ready.manifest, answer.name, immutable=False)
            except ArtifactMissing:
                log.warning("Artifact %s vanished after lookup; requesting a rebuild.", ready.plan.cache_key)
                self.files.forget(ready.manifest.cache_key)
                answer = self.files.miss(ready.record, ready.plan, kind, head)
        return accepted(answer)

    def data_status(self, request: Request) -> Response:
        return JSONResponse({"ready": self.files.ready(Stage.DATA, *_file(request))})

    def index_status(self, request: Request) -> Response:
        return JSONResponse({"ready": self.files.ready(Stage.INDEX, *_file(request))})

    def job(self, request: Request) -> Response:
        return JSONResponse(self.files.job_view(self.files.job(request.path_params["job_id"])))

    def describe(self, request: Request) -> Response:
        prepare = request.method == "POST" or request.query_params.get("prepare", "").lower() == "true"
        state, job = self.files.describe(*_file(request), prepare=prepare)
        if job is None:
            return JSONResponse(self.files.file_view(state))
        headers = {"Location": f"/jobs/{job.job_id}", "Retry-After": RETRY_AFTER_202}
        return JSONResponse(self.files.file_view(state), 202, headers=headers)

    def contigs(self, request: Request) -> Response:
        return JSONResponse(self.contig_reader.contigs(*_file(request)).to_json())

    def listing(self, request: Request) -> Response:
        dcc = request.query_params.get("dcc", "").strip().lower() or None
        try:
            limit = int(request.query_params.get("limit", "50"))
        except ValueError:
            limit = 0  # refused by page() with the range in the sentence
        states, next_cursor = self.files.page(dcc, limit, request.query_params.get("cursor"))
        return JSONResponse({"files": [self.files.file_view(fs) for fs in states], "next_cursor": next_cursor})

    def artifact(self, request: Request) -> Response:
        """A content-addressed artifact: immutable, never 202 (a missing one is 404)."""
        key, name = request.path_params["cache_key"], request.path_params["name"]
        if not is_cache_key(key):
            raise HTTPProblem(404, "Artifact not found")
        manifest = self.files.manifest(key)
        if manifest is None or manifest.artifact(name) is None:
            raise HTTPProblem(404, "Artifact not found; GET /files/{dcc}/{local_id} tells when it is ready.")
        if self.redirect:
            # Bytes straight from S3: each range then pays a redirect round trip, and the bucket
            # needs a CORS rule (README, "Serving from S3").
            location = self.store.presigned_url(key, name)  # type: ignore[attr-defined]
            return Response(status_code=307, headers={"Location": location, "Cache-Control": "no-store"})
        try:
            return artifact_response(request, self.store, manifest, name, immutable=True)
        except ArtifactMissing:
            self.files.forget(key)
            raise HTTPProblem(404, "Artifact not found") from None

    async def artifact_inline(self, request: Request) -> Response:
        # The browsers' hot path. A local artifact read is a page-cache read of at most 1 MiB (larger
        # ranges stream from a thread), cheaper inline than a thread hop (bench/serve.py).
        return self.artifact(request)

    async def health(self, request: Request) -> Response:
        report = self.catalog.report()
        catalog = {**report.to_json(), "reload_error": self.catalog.reload_error()} if report else None
        return JSONResponse({"status": "ok", "catalog": catalog})

    async def openapi(self, request: Request) -> Response:
        return JSONResponse(self.document)


def _file(request: Request) -> tuple[str, str]:
    return request.path_params["dcc"], request.path_params["local_id"]


def _raw(request: Request) -> bool:
    value = request.query_params.get("raw", "false").strip().lower()
    if value not in ("true", "false", "1", "0"):
        raise HTTPProblem(400, "raw must be true or false.")
    return value in ("true", "1")
