"""The viewer: GET / (the catalog by DCC, with each file's state) and GET /view/{dcc}/{local_id}
(a Gosling view of one file, which requests its preparation and follows the job first), rendered
from ``serve/templates/``, and ``/static`` (their scripts and style, and the Gosling bundle that
scripts/setup.sh vendors into ``serve/static/vendor/``). The pages use the JSON API only."""

from __future__ import annotations

import hashlib
import html
import re
from pathlib import Path

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

__all__ = ["GOSLING_BUNDLE", "MISSING_VENDOR", "StaticAssets", "Viewer"]

STATIC = Path(__file__).with_name("static")
TEMPLATES = Path(__file__).with_name("templates")
GOSLING_BUNDLE = "vendor/gosling.js"
IMMUTABLE = "public, max-age=31536000, immutable"
PAGE_HEADERS = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
PARAM = re.compile(r"^[A-Za-z0-9._-]{1,256}$")
PLACEHOLDER = re.compile(r"\{\{(static:)?([A-Za-z0-9_./-]+)\}\}")
MISSING_VENDOR = ("The viewer's JavaScript libraries (Gosling and its peers) are not installed on this "
                  "server: run `make run` (or scripts/setup.sh) once, which puts them in "
                  "serve/static/vendor/, then reload this page.")


class StaticAssets(StaticFiles):
    """Starlette's StaticFiles with cache headers: a URL carrying its file's version (``?v=``, as
    the pages link them) is immutable; any other is revalidated by its ETag on every use."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        if response.status_code in (200, 304):
            versioned = re.search(rb"(^|&)v=", scope.get("query_string", b"")) is not None
            response.headers["Cache-Control"] = IMMUTABLE if versioned else "no-cache"
            response.headers["X-Content-Type-Options"] = "nosniff"
        return response


class Viewer:
    """The pages and static files of the viewer, for the DCCs served."""

    def __init__(self, dccs: tuple[str, ...], static: Path = STATIC, templates: Path = TEMPLATES):
        self.dccs, self.static = dccs, static
        self.templates = {name: (templates / f"{name}.html").read_text() for name in ("catalog", "view", "message")}
        self._versions: dict[str, tuple[tuple[int, int], str]] = {}

    def routes(self) -> list[BaseRoute]:
        """GET|HEAD /, /view/{dcc}/{local_id} and /static/{path}."""
        return [
            Route("/", self.catalog, methods=["GET"]),
            Route("/view/{dcc}/{local_id}", self.view, methods=["GET"]),
            Mount("/static", StaticAssets(directory=self.static), name="static"),
        ]

    async def catalog(self, request: Request) -> Response:
        return self._page("catalog", dccs=",".join(self.dccs))

    async def view(self, request: Request) -> Response:
        dcc, local_id = request.path_params["dcc"], request.path_params["local_id"]
        if not (PARAM.match(dcc) and PARAM.match(local_id)):
            return self._page("message", 400, message="Invalid file: use 1-256 characters from A-Z a-z 0-9 . _ -")
        if not (self.static / GOSLING_BUNDLE).is_file():
            return self._page("message", 503, message=MISSING_VENDOR)
        return self._page("view", dcc=dcc, local_id=local_id)

    def _page(self, name: str, status: int = 200, **values: str) -> HTMLResponse:
        def fill(match: re.Match) -> str:
            if match.group(1):
                return html.escape(self.asset_url(match.group(2)))
            return html.escape(values[match.group(2)])

        return HTMLResponse(PLACEHOLDER.sub(fill, self.templates[name]), status, headers=PAGE_HEADERS)

    def asset_url(self, path: str) -> str:
        """``/static/<path>?v=<its content's hash>`` (immutable; a new version gets a new URL)."""
        file = self.static / path
        stat = file.stat()
        signature = (stat.st_mtime_ns, stat.st_size)
        known = self._versions.get(path)
        if known is None or known[0] != signature:
            known = (signature, hashlib.sha256(file.read_bytes()).hexdigest()[:12])
            self._versions[path] = known
        return f"/static/{path}?v={known[1]}"
