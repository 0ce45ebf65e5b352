"""HTTP errors: one exception type for expected answers, and the table mapping our boundaries'
errors to statuses. Bodies are ``{"detail": <sentence>}``; never a stack trace."""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse

from resources import CatalogError, FetchError, LedgerError, StoreError, UpstreamRangeNotSatisfiable

__all__ = ["EXCEPTION_HANDLERS", "HTTPProblem"]

log = logging.getLogger("cfdb.serve")


class HTTPProblem(Exception):
    """An expected non-2xx answer: status, a sentence for the user, optional headers and fields."""

    def __init__(
        self, status: int, detail: str, headers: dict[str, str] | None = None, fields: dict | None = None
    ):
        super().__init__(detail)
        self.status, self.detail, self.headers, self.fields = status, detail, headers or {}, fields or {}


def _problem(request: Request, exc: HTTPProblem) -> JSONResponse:
    return JSONResponse({"detail": exc.detail, **exc.fields}, exc.status, headers=exc.headers)


def _unavailable(what: str):
    def handler(request: Request, exc: Exception) -> JSONResponse:
        log.warning("%s unavailable: %s", what, exc)
        return JSONResponse(
            {"detail": f"The {what} is temporarily unavailable; please retry shortly."},
            503,
            headers={"Retry-After": "30"},
        )

    return handler


def _upstream(request: Request, exc: FetchError) -> JSONResponse:
    headers = {}
    if isinstance(exc, UpstreamRangeNotSatisfiable):
        headers["Content-Range"] = f"bytes */{'*' if exc.size is None else exc.size}"
    return JSONResponse({"detail": str(exc)}, exc.status, headers=headers)


def _framework(request: Request, exc: HTTPException) -> JSONResponse:
    """Starlette's own answers (no route: 404, a method the route lacks: 405 with Allow), as JSON."""
    detail = {404: "Not found; see /openapi.json for the API's paths.",
              405: f"Method {request.method} is not allowed here."}.get(exc.status_code, str(exc.detail))
    return JSONResponse({"detail": detail}, exc.status_code, headers=exc.headers)


def _internal(request: Request, exc: Exception) -> JSONResponse:
    log.error("Unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse({"detail": "Internal server error."}, 500)


EXCEPTION_HANDLERS = {
    HTTPProblem: _problem,
    HTTPException: _framework,
    CatalogError: _unavailable("catalog"),
    LedgerError: _unavailable("request ledger"),
    StoreError: _unavailable("artifact store"),
    FetchError: _upstream,
    Exception: _internal,
}
