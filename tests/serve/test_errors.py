"""The one table from boundary errors to HTTP statuses, through a tiny app with our handlers."""

from __future__ import annotations

import pytest
from starlette.applications import Starlette
from starlette.routing import Route
from starlette.testclient import TestClient

from resources import (
    ArtifactMissing,
    CatalogError,
    ChecksumMismatch,
    FetchError,
    LedgerError,
    PermanentFetchError,
    StoreError,
    UpstreamNotFound,
    UpstreamRangeNotSatisfiable,
    UpstreamTimeout,
)
from serve.errors import EXCEPTION_HANDLERS, HTTPProblem

CASES = [
    (FetchError("The upstream answered HTTP 500."), 502, {}),
    (UpstreamTimeout("The upstream timed out."), 504, {}),
    (UpstreamNotFound("The upstream answered HTTP 404."), 404, {}),
    (PermanentFetchError("The upstream answered HTTP 403."), 502, {}),
    (ChecksumMismatch("The source bytes do not match."), 502, {}),
    (UpstreamRangeNotSatisfiable(1234), 416, {"content-range": "bytes */1234"}),
    (UpstreamRangeNotSatisfiable(None), 416, {"content-range": "bytes */*"}),
    (CatalogError("down"), 503, {"retry-after": "30"}),
    (LedgerError("down"), 503, {"retry-after": "30"}),
    (StoreError("down"), 503, {"retry-after": "30"}),
    (ArtifactMissing("gone"), 503, {"retry-after": "30"}),
    (HTTPProblem(422, "A sentence.", fields={"job_id": "j"}), 422, {}),
    (RuntimeError("/secret/path exploded"), 500, {}),
]


@pytest.mark.parametrize(("error", "status", "headers"), CASES, ids=lambda v: type(v).__name__ if isinstance(v, Exception) else None)
def test_each_boundary_error_has_its_status_and_a_json_sentence(error, status, headers):
    def boom(request):
        raise error

    app = Starlette(routes=[Route("/boom", boom)], exception_handlers=EXCEPTION_HANDLERS)
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/boom")

    assert response.status_code == status
    assert isinstance(response.json()["detail"], str) and response.json()["detail"]
    assert "/secret/path" not in response.text and "Traceback" not in response.text
    for name, value in headers.items():
        assert response.headers[name] == value
