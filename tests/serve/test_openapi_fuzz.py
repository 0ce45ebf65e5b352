"""Property-based fuzzing of the whole API from its own OpenAPI document (schemathesis, bounded):
no 5xx, every status, content type, header and body as documented. Plus hostile inputs by hand."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from starlette.testclient import TestClient

from synthetic.demo import write_demo
from resources import Settings
from serve.app import create_app

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]


def _app(root: Path):
    settings = Settings.from_environ({"CFDB_DATA_DIR": str(root / "data"), "CFDB_CATALOG": str(write_demo(root))})
    return create_app(settings)


# Loaded at collection (schemathesis parametrizes from it); the app's data lives in a temp dir.
_ROOT = Path(tempfile.mkdtemp(prefix="cfdb-fuzz-"))
atexit.register(shutil.rmtree, _ROOT, True)
schema = schemathesis.openapi.from_asgi("/openapi.json", _app(_ROOT))


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_openapi_document(case):
    case.call_and_validate(checks=CHECKS)


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    with TestClient(_app(tmp_path_factory.mktemp("hostile")), raise_server_exceptions=False) as client:
        yield client


@pytest.mark.parametrize(
    "path",
    [
        "/data/encode/..%2F..%2Fetc%2Fpasswd",
        "/data/encode/%2e%2e",
        "/artifacts/../../etc/passwd",
        "/artifacts/0123456789abcdef0123456789abcdef/..%2Fmanifest.json",
        "/index/encode/" + "A" * 5000,
    ],
)
def test_path_traversal_and_absurd_paths_are_4xx(client, path):
    assert 400 <= client.get(path).status_code < 500


@pytest.mark.parametrize(
    "header",
    ["bytes=99999999999999999999999-", "bytes=-99999999999999999999", "bytes=0-" + "9" * 400, "bytes=" + "0-1," * 2000],
)
def test_absurd_ranges_never_5xx(client, header):
    response = client.get("/data/encode/ENCFF000CSV", headers={"Range": header})
    assert response.status_code in (200, 206, 400, 416)


def test_huge_headers_and_unknown_methods_are_4xx(client):
    assert client.get("/data/encode/ENCFF000CSV", headers={"Range": "x" * 60_000}).status_code == 400
    assert client.request("DELETE", "/data/encode/ENCFF000CSV").status_code == 405
    assert client.request("PATCH", "/jobs/x").status_code == 405
