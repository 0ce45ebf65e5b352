"""The Starlette app: /data, /index, /jobs, /files, /artifacts (the composition root of ``serve``).

``create_app`` builds the adapters and options from Settings (or takes them, for tests), checks them
once, and wraps everything, error handlers included, in CORS from the outside.
"""

from __future__ import annotations

import contextlib

from starlette.applications import Starlette
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp

from cfdb_assets.planning import OutputOptions
from resources import Adapters, ArtifactStore, Catalog, Ledger, LocalStore, Settings, SourceFetcher, adapters
from serve.endpoints import Endpoints
from serve.errors import EXCEPTION_HANDLERS
from serve.fast_artifacts import ArtifactFastPath
from serve.files import Files
from serve.openapi import openapi

__all__ = ["create_app"]

EXPOSED = ["Content-Range", "Content-Length", "Accept-Ranges", "ETag", "Location", "Retry-After"]


def create_app(
    settings: Settings | None = None,
    *,
    catalog: Catalog | None = None,
    store: ArtifactStore | None = None,
    ledger: Ledger | None = None,
    fetcher: SourceFetcher | None = None,
    fast_artifacts: bool = True,
) -> ASGIApp:
    """The ASGI app. Adapters default to those the Settings name; all are checked here, once.
    ``fast_artifacts``: plain artifact reads from a local store skip the routing
    (serve/fast_artifacts.py); off, every request goes through the routes (tests compare both)."""
    settings = settings or Settings.from_environ()
    default = adapters(settings)
    parts = Adapters(
        catalog=catalog or default.catalog,
        store=store or default.store,
        ledger=ledger or default.ledger,
        fetcher=fetcher or default.fetcher,
    )
    parts.check()
    files = Files(settings, parts.catalog, parts.store, parts.ledger, OutputOptions.from_settings(settings))
    endpoints = Endpoints(files, parts.catalog, parts.store, parts.fetcher, openapi(settings.dccs), settings.s3_redirect)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        files.draining = True  # shutting down: requests still in flight get 503 for new work

    app = Starlette(
        routes=endpoints.routes(inline_artifacts=isinstance(parts.store, LocalStore)),
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
    )
    if fast_artifacts and isinstance(parts.store, LocalStore):
        app = ArtifactFastPath(app, files, parts.store)  # the browsers' range reads, without the routing
    return CORSMiddleware(
        app,
        allow_origins=[settings.cors_origin],
        allow_methods=["GET", "HEAD", "POST", "OPTIONS"],
        allow_headers=["Range", "Authorization", "If-None-Match", "If-Range"],
        expose_headers=EXPOSED,
        max_age=86400,
    )
