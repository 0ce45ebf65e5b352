"""The original service's status matrix (reference §1.9), row by row, plus the new endpoints:
status, the headers that matter (CORS, ETag, Content-Range, Retry-After, Location) and the body."""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.testclient import TestClient

from resources import Ledger, Settings
from serve.app import create_app
from tests.helpers import build_artifacts

ORIGIN = {"Origin": "https://gosling.example"}
EXPOSED = {"content-range", "content-length", "accept-ranges", "etag", "location", "retry-after"}


@pytest.fixture
def world(settings, store):
    """A BED that is ready (a hit), everything else cold; the app over them."""
    key, result = build_artifacts(settings, "encode", "ENCFF000BED")
    assert result.success
    ledger = Ledger(url=settings.ledger_url)
    ledger.finish(ledger.latest_jobs([key])[key].job_id, succeeded=True)
    return settings, key


def _app(settings: Settings, **env) -> TestClient:
    overrides = Settings.from_environ({"CFDB_DATA_DIR": str(settings.data_dir), "CFDB_CATALOG": settings.catalog, **env})
    return TestClient(create_app(overrides), raise_server_exceptions=False)


ROWS = [
    # (row of §1.9, method, path, request headers, status, response headers that must be present)
    ("GET /data hit", "GET", "/data/encode/ENCFF000BED", {}, 200, {"etag", "accept-ranges"}),
    ("GET /data hit with Range", "GET", "/data/encode/ENCFF000BED", {"Range": "bytes=0-99"}, 206, {"content-range"}),
    ("GET /data miss", "GET", "/data/encode/ENCFF000SAM", {}, 202, {"location", "retry-after"}),
    ("HEAD /data hit", "HEAD", "/data/encode/ENCFF000BED", {}, 200, {"content-length"}),
    ("HEAD /data miss", "HEAD", "/data/encode/ENCFF000SAM", {}, 404, set()),
    ("GET /data?raw=true", "GET", "/data/encode/ENCFF000BED?raw=true", {}, 200, {"content-disposition"}),
    ("GET /data passthrough CSV", "GET", "/data/encode/ENCFF000CSV", {}, 200, {"content-length"}),
    ("GET /index hit", "GET", "/index/encode/ENCFF000BED", {}, 200, {"etag"}),
    ("GET /index miss", "GET", "/index/encode/ENCFF000SAM", {}, 202, {"location", "retry-after"}),
    ("GET /index?raw=true, no sidecar", "GET", "/index/encode/ENCFF000BED?raw=true", {}, 404, set()),
    ("GET /index passthrough CSV", "GET", "/index/encode/ENCFF000CSV", {}, 404, set()),
    ("unknown DCC", "GET", "/data/nope/ENCFF000BED", {}, 400, set()),
    ("bad local_id", "GET", "/data/encode/bad$id", {}, 400, set()),
    ("unknown file", "GET", "/index/encode/NOPE", {}, 404, set()),
    ("HuBMAP not public", "GET", "/data/hubmap/HBM000PROT", {}, 403, set()),
    ("no checksum", "GET", "/data/encode/ENCFF000NOSUM", {}, 422, set()),
    ("range past EOF", "GET", "/data/encode/ENCFF000BED", {"Range": "bytes=999999999-"}, 416, {"content-range"}),
    ("malformed range", "GET", "/data/encode/ENCFF000BED", {"Range": "bytes=9-1"}, 400, set()),
    ("/data status hit", "GET", "/data/encode/ENCFF000BED/status", {}, 200, set()),
    ("/index status miss", "GET", "/index/encode/ENCFF000SAM/status", {}, 200, set()),
    ("/jobs unknown", "GET", "/jobs/no-such-job", {}, 404, set()),
    ("/files one", "GET", "/files/encode/ENCFF000BED", {}, 200, set()),
    ("/files list", "GET", "/files?dcc=encode&limit=2", {}, 200, set()),
    ("/files prepare", "GET", "/files/encode/ENCFF000NPK?prepare=true", {}, 202, {"location"}),
    ("/artifacts unknown", "GET", f"/artifacts/{'f' * 32}/data.bam", {}, 404, set()),
]


@pytest.mark.parametrize(("row", "method", "path", "headers", "status", "present"), ROWS, ids=[r[0] for r in ROWS])
def test_status_matrix_row(world, row, method, path, headers, status, present):
    settings, _ = world
    with _app(settings) as client:
        response = client.request(method, path, headers={**ORIGIN, **headers})
    assert response.status_code == status, response.text
    assert present <= set(response.headers)
    assert response.headers["access-control-allow-origin"] == "*"  # CORS on every answer, errors too
    assert {h.strip().lower() for h in response.headers["access-control-expose-headers"].split(",")} >= EXPOSED
    if status >= 400 and method != "HEAD":
        assert isinstance(response.json()["detail"], str) and "Traceback" not in response.text
    if status == 202:
        body = response.json()
        job_id = body["job_id"] if "job_id" in body else body["job"]["job_id"]
        assert response.headers["location"] == f"/jobs/{job_id}"


def test_repeated_misses_share_a_job_and_a_failed_one_gets_a_new_job(world):
    settings, _ = world
    with _app(settings) as client:
        first = client.get("/data/encode/ENCFF000SAM").json()["job_id"]
        assert client.get("/index/encode/ENCFF000SAM").json()["job_id"] == first
        Ledger(url=settings.ledger_url).finish(first, succeeded=False, error="worker lost")  # transient
        retried = client.get("/data/encode/ENCFF000SAM")
    assert retried.status_code == 202 and retried.json()["job_id"] != first


def test_processing_off_is_503_for_misses_and_still_serves_hits(world):
    settings, _ = world
    with _app(settings, CFDB_PROCESSING="false") as client:
        assert client.get("/data/encode/ENCFF000BED").status_code == 200
        for path in ("/data/encode/ENCFF000SAM", "/index/encode/ENCFF000SAM"):
            response = client.get(path)
            assert response.status_code == 503 and response.headers["retry-after"] == "30"


def test_draining_server_answers_new_work_with_503(world):
    settings, _ = world
    overrides = Settings.from_environ({"CFDB_DATA_DIR": str(settings.data_dir), "CFDB_CATALOG": settings.catalog})
    app = create_app(overrides)
    with TestClient(app):
        pass  # startup, then shutdown: the lifespan marks the app as draining
    response = TestClient(app).get("/data/encode/ENCFF000SAM")
    assert response.status_code == 503 and response.headers["retry-after"] == "30"
    assert "shutting down" in response.json()["detail"]


def test_admission_ceiling_is_429_for_new_work_only(world):
    settings, _ = world
    with _app(settings, CFDB_MAX_ACTIVE_JOBS="1") as client:
        first = client.get("/data/encode/ENCFF000SAM")
        second = client.get("/data/encode/ENCFF000NPK")
        joined = client.get("/index/encode/ENCFF000SAM")
    assert first.status_code == 202 and joined.status_code == 202
    assert second.status_code == 429 and second.headers["retry-after"] == "120"


def test_artifact_304_keeps_cors_and_etag(world):
    settings, key = world
    with _app(settings) as client:
        etag = client.get(f"/artifacts/{key}/data.bed.gz").headers["etag"]
        response = client.get(f"/artifacts/{key}/data.bed.gz", headers={**ORIGIN, "If-None-Match": etag})
    assert response.status_code == 304 and response.headers["etag"] == etag
    assert response.headers["access-control-allow-origin"] == "*"
    assert Path(settings.store, key, "manifest.json").is_file()


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("GET", "/nope", 404), ("GET", "/data/encode", 404), ("DELETE", "/data/encode/ENCFF000BED", 405),
     ("PUT", "/files/encode/ENCFF000BED", 405), ("POST", "/artifacts/" + "0" * 32 + "/data.bam", 405)],
)
def test_unmatched_routes_and_methods_answer_json_with_cors(settings, store, method, path, status):
    with TestClient(create_app(settings)) as client:
        response = client.request(method, path, headers={"Origin": "https://gosling.example"})

    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert response.json()["detail"].endswith(".")
    assert response.headers["access-control-allow-origin"] == "*"
    if status == 405:
        assert "GET" in response.headers["allow"]
