"""The HTTP contract of this slice, through Starlette's in-process TestClient on real resources."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from resources import FileCatalog, Ledger
from serve.app import create_app
from tests.helpers import build_artifacts

ORIGIN = {"Origin": "https://gosling.example"}


@pytest.fixture
def client(settings, store):
    with TestClient(create_app(settings)) as client:
        yield client



def test_unknown_dcc_is_400_listing_the_valid_ones(client):
    response = client.get("/data/nope/ENCFF000BED")
    assert response.status_code == 400
    assert response.json()["detail"] == "Unknown DCC 'nope'. Valid DCCs: 4dn, encode, hubmap"


@pytest.mark.parametrize("local_id", ["bad%20id", "a" * 257, "semi;colon"])
def test_path_parameters_outside_the_safe_alphabet_are_400_not_422(client, local_id):
    response = client.get(f"/data/encode/{local_id}")
    assert response.status_code == 400
    assert "Invalid local_id" in response.json()["detail"]


def test_unknown_file_is_404(client):
    response = client.get("/data/encode/ENCFF999XXX")
    assert response.status_code == 404 and response.json()["detail"] == "File not found"


def test_dcc_is_case_insensitive(client):
    assert client.head("/data/ENCODE/ENCFF000CSV").status_code == 200


def test_hubmap_file_that_is_not_public_is_403_and_public_one_is_served(client):
    denied = client.get("/data/hubmap/HBM000PROT")
    assert denied.status_code == 403
    assert denied.json()["detail"].startswith("This file requires protected access")
    assert client.get("/index/hubmap/HBM000PROT").status_code == 403
    assert client.get("/data/hubmap/HBM000BED").status_code == 202


def test_file_without_access_url_is_501_on_data(tmp_path, settings, store):
    catalog = tmp_path / "catalog.jsonl"
    doc = {"submission": "encode", "local_id": "ENCFFNOURL", "md5": "a" * 32,
           "file_format": {"id": "format:3003", "name": "BED"}}
    catalog.write_text(json.dumps(doc) + "\n")
    with TestClient(create_app(settings, catalog=FileCatalog(path=str(catalog)))) as client:
        response = client.get("/data/encode/ENCFFNOURL")
    assert response.status_code == 501 and response.json()["detail"] == "File has no access URL"


def test_get_miss_is_202_with_location_and_retry_after_and_repeats_attach_to_the_same_job(client, settings):
    first = client.get("/data/encode/ENCFF000BED", headers=ORIGIN)
    assert first.status_code == 202
    body = first.json()
    assert body["status"] == "pending"
    assert first.headers["location"] == f"/jobs/{body['job_id']}"
    assert first.headers["retry-after"] == "5"
    assert "Location" in first.headers["access-control-expose-headers"]
    second = client.get("/index/encode/ENCFF000BED")
    assert second.status_code == 202 and second.json()["job_id"] == body["job_id"]


def test_head_miss_is_404_and_creates_no_job(client, settings):
    response = client.head("/data/encode/ENCFF000BED")
    assert response.status_code == 404
    listing = client.get("/files/encode/ENCFF000BED").json()
    assert listing["state"] == "missing" and listing["job"] is None


def test_hit_serves_200_206_clamped_416_and_400_with_cors(client, settings):
    key, result = build_artifacts(settings, "encode", "ENCFF000BED")
    assert result.success
    data = (Path(settings.store) / key / "data.bed.gz").read_bytes()
    size = len(data)

    whole = client.get("/data/encode/ENCFF000BED", headers=ORIGIN)
    assert whole.status_code == 200 and whole.content == data
    assert whole.headers["content-length"] == str(size)
    assert whole.headers["accept-ranges"] == "bytes"
    assert whole.headers["content-type"] == "application/octet-stream"
    assert "content-encoding" not in whole.headers
    assert whole.headers["access-control-allow-origin"] == "*"

    clamped = client.get("/data/encode/ENCFF000BED", headers={"Range": f"bytes=100-{size + 5000}"})
    assert clamped.status_code == 206
    assert clamped.headers["content-range"] == f"bytes 100-{size - 1}/{size}"
    assert clamped.content == data[100:]

    suffix = client.get("/data/encode/ENCFF000BED", headers={"Range": "bytes=-10"})
    assert suffix.status_code == 206 and suffix.content == data[-10:]

    past = client.get("/data/encode/ENCFF000BED", headers={"Range": f"bytes={size}-"})
    assert past.status_code == 416 and past.headers["content-range"] == f"bytes */{size}"

    assert client.get("/data/encode/ENCFF000BED", headers={"Range": "bytes=5-2"}).status_code == 400

    head = client.head("/data/encode/ENCFF000BED", headers={"Range": "bytes=0-9"})
    assert head.status_code == 206 and head.headers["content-length"] == "10" and head.content == b""

    index = client.get("/index/encode/ENCFF000BED")
    assert index.status_code == 200
    assert index.content == (Path(settings.store) / key / "data.bed.gz.tbi").read_bytes()


def test_files_describes_a_ready_file_with_content_addressed_urls_that_serve_bytes(client, settings):
    key, _ = build_artifacts(settings, "encode", "ENCFF000SAM")
    info = client.get("/files/encode/ENCFF000SAM").json()
    assert info["state"] == "ready"
    assert info["data_url"] == f"/artifacts/{key}/data.bam"
    assert info["index_url"] == f"/artifacts/{key}/data.bam.bai"
    assert info["index_type"] == "bai"
    assert client.get(info["data_url"]).content[:4] == b"\x1f\x8b\x08\x04"
    assert client.get(f"/artifacts/{key}/manifest.json").status_code == 404
    assert client.get(f"/artifacts/{'0' * 32}/data.bam").status_code == 404


def test_a_vanished_artifact_becomes_a_new_job_not_an_empty_200(client, settings):
    key, _ = build_artifacts(settings, "encode", "ENCFF000BED")
    (Path(settings.store) / key / "data.bed.gz").unlink()
    response = client.get("/data/encode/ENCFF000BED")
    assert response.status_code == 202


def test_passthrough_csv_streams_upstream_and_has_no_index(client, demo_dir):
    source = (demo_dir / "sources" / "ENCFF000CSV.csv").read_bytes()
    whole = client.get("/data/encode/ENCFF000CSV")
    assert whole.status_code == 200 and whole.content == source
    assert whole.headers["content-type"].startswith("text/csv")
    part = client.get("/data/encode/ENCFF000CSV", headers={"Range": "bytes=5-14"})
    assert part.status_code == 206 and part.content == source[5:15]
    assert part.headers["content-range"] == f"bytes 5-14/{len(source)}"
    index = client.get("/index/encode/ENCFF000CSV")
    assert index.status_code == 404
    assert index.json()["detail"] == "No index file available for this file format"


def test_raw_true_streams_upstream_even_for_processed_formats(client, demo_dir):
    response = client.get("/data/encode/ENCFF000BED?raw=true")
    assert response.status_code == 200
    assert response.content == (demo_dir / "sources" / "ENCFF000BED.bed").read_bytes()
    assert client.get("/index/encode/ENCFF000BED?raw=true").status_code == 404


def test_file_without_checksum_is_refused_with_a_sentence_but_raw_still_streams(client):
    refused = client.get("/data/encode/ENCFF000NOSUM")
    assert refused.status_code == 422
    assert "no md5 or sha256" in refused.json()["detail"]
    assert client.get("/data/encode/ENCFF000NOSUM?raw=true").status_code == 200
    assert client.get("/files/encode/ENCFF000NOSUM").json()["state"] == "unprocessable"


def test_jobs_unknown_is_404_and_known_has_the_original_fields(client):
    assert client.get("/jobs/not-a-job").json() == {"detail": "Job not found"}
    assert client.get("/jobs/%00").status_code == 404
    job_id = client.get("/data/encode/ENCFF000BED").json()["job_id"]
    body = client.get(f"/jobs/{job_id}").json()
    for field in ("job_id", "status", "stages_done", "artifacts", "progress", "error", "superseded_by"):
        assert field in body
    assert body["status"] == "pending" and body["run_url"] is None


def test_jobs_shows_the_progress_of_a_running_job_and_the_job_that_replaced_a_failed_one(client, settings):
    ledger = Ledger(url=settings.ledger_url)  # the API's own ledger: the writes a run worker makes
    first = client.get("/data/encode/ENCFF000BED").json()["job_id"]
    ledger.set_progress(first, 1, "fetching: 1.0 MB of 2.0 MB")
    assert client.get(f"/jobs/{first}").json()["progress"] == "fetching: 1.0 MB of 2.0 MB"

    ledger.finish(first, succeeded=False, error="The worker stopped.")
    second = client.get("/data/encode/ENCFF000BED").json()["job_id"]

    body = client.get(f"/jobs/{first}").json()
    assert (body["status"], body["superseded_by"], body["progress"]) == ("failed", second, None)
    assert client.get(f"/jobs/{second}").json()["superseded_by"] is None


def test_files_links_a_processed_file_to_its_partition_in_the_dagster_ui(client, settings):
    bed = client.get("/files/encode/ENCFF000BED").json()
    assert bed["asset_url"] == (f"{settings.dagster_url}/assets/encode/intervals/index?view=partitions"
                                f"&partition={bed['cache_key']}")
    assert "asset_url" not in client.get("/files/encode/ENCFF000CSV").json()  # passthrough: no partition


def test_files_listing_pages_through_every_file_with_a_cursor(client, catalog):
    expected = [(r.dcc, r.local_id) for dcc in ("4dn", "encode", "hubmap") for r in catalog.list(dcc, 1000)]
    seen, cursor = [], None
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = client.get("/files", params=params).json()
        seen += [(f["dcc"], f["local_id"]) for f in page["files"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == expected
    states = {f["local_id"]: f["state"] for f in client.get("/files", params={"dcc": "encode"}).json()["files"]}
    assert states["ENCFF000CSV"] == "passthrough" and states["ENCFF000BED"] == "missing"
    assert client.get("/files", params={"limit": 0}).status_code == 400
    assert client.get("/files", params={"cursor": "garbage"}).status_code == 400


def test_post_files_requests_preparation_without_downloading(client):
    response = client.post("/files/encode/ENCFF000SAM")
    assert response.status_code == 202
    assert response.json()["state"] == "queued"
    assert response.headers["location"] == f"/jobs/{response.json()['job']['job_id']}"


def test_an_unexpected_error_is_a_500_sentence_with_cors_and_no_trace(settings, store):
    class BrokenCatalog(FileCatalog):
        def get(self, dcc, local_id):
            raise RuntimeError("secret internals /etc/passwd")

    app = create_app(settings, catalog=BrokenCatalog(path=settings.catalog))
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/data/encode/ENCFF000BED", headers=ORIGIN)
    assert response.status_code == 500
    assert response.json() == {"detail": "Internal server error."}
    assert response.headers["access-control-allow-origin"] == "*"


def test_preflight_allows_range_and_authorization(client):
    response = client.options(
        "/data/encode/ENCFF000BED",
        headers={**ORIGIN, "Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "Range, Authorization"},
    )
    assert response.status_code == 200
    allowed = response.headers["access-control-allow-headers"].lower()
    assert "range" in allowed and "authorization" in allowed
    assert int(response.headers["access-control-max-age"]) >= 3600


def test_artifacts_are_immutable_with_a_strong_etag_and_answer_if_none_match_with_304(client, settings):
    key, _ = build_artifacts(settings, "encode", "ENCFF000BED")
    data = (Path(settings.store) / key / "data.bed.gz").read_bytes()
    url = f"/artifacts/{key}/data.bed.gz"
    first = client.get(url, headers=ORIGIN)
    assert first.status_code == 200 and first.content == data
    assert first.headers["etag"] == f'"{hashlib.sha256(data).hexdigest()}"'
    assert first.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert first.headers["last-modified"].endswith(" GMT")

    cached = client.get(url, headers={**ORIGIN, "If-None-Match": first.headers["etag"]})
    assert cached.status_code == 304 and cached.content == b""
    assert cached.headers["etag"] == first.headers["etag"]
    assert cached.headers["access-control-allow-origin"] == "*"
    assert client.get(url, headers={"If-None-Match": '"other"'}).status_code == 200


def test_if_range_with_the_current_etag_gets_the_range_and_a_stale_one_the_whole_file(client, settings):
    key, _ = build_artifacts(settings, "encode", "ENCFF000BED")
    url = f"/artifacts/{key}/data.bed.gz.tbi"
    etag = client.head(url).headers["etag"]
    current = client.get(url, headers={"Range": "bytes=0-9", "If-Range": etag})
    assert current.status_code == 206 and len(current.content) == 10
    stale = client.get(url, headers={"Range": "bytes=0-9", "If-Range": '"stale"'})
    assert stale.status_code == 200
    assert stale.content == (Path(settings.store) / key / "data.bed.gz.tbi").read_bytes()


def test_data_hits_carry_the_etag_but_are_not_marked_immutable(client, settings):
    build_artifacts(settings, "encode", "ENCFF000SAM")
    response = client.get("/data/encode/ENCFF000SAM")
    assert response.status_code == 200 and response.headers["etag"].startswith('"')
    assert "cache-control" not in response.headers


def test_health_reports_what_the_catalog_load_skipped(tmp_path, settings, store):
    path = tmp_path / "catalog.jsonl"
    lines = (Path(settings.catalog).read_text().splitlines())
    lines.append(json.dumps({"submission": "ENCODE-DCC", "local_id": "X1"}))  # another spelling of a served DCC
    path.write_text("\n".join(lines) + "\n")
    with TestClient(create_app(replace(settings, catalog=str(path)))) as client:
        body = client.get("/health").json()

    assert body["status"] == "ok"
    assert body["catalog"]["documents"] == len(lines)
    assert body["catalog"]["skipped"] == {"submission is not a served DCC": 1}


def test_openapi_lists_the_served_dccs(settings, store):
    with TestClient(create_app(replace(settings, dccs=("encode", "lincs")))) as client:
        document = client.get("/openapi.json").json()

    assert document["components"]["schemas"]["Dcc"]["enum"] == ["encode", "lincs"]
