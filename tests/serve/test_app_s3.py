"""The same artifacts built into S3 (moto's HTTP server) and served from it with ranges."""

from __future__ import annotations

import boto3
import pysam
import pytest
from starlette.testclient import TestClient

from resources import Settings
from serve.app import create_app
from tests.helpers import build_artifacts


@pytest.fixture
def s3_settings(tmp_path, demo_dir, moto_server):
    """Settings on the demo catalog with the store in the moto bucket; overrides as keywords."""

    def make(**env) -> Settings:
        return Settings.from_environ({
            "CFDB_DATA_DIR": str(tmp_path / "data"),
            "CFDB_CATALOG": str(demo_dir / "catalog.jsonl"),
            "AWS_ENDPOINT_URL": moto_server,
            **env,
        })

    return make


def test_artifacts_built_into_s3_are_served_with_ranges_and_pysam_reads_them(tmp_path, s3_settings, s3_bucket, moto_server):
    settings = s3_settings(CFDB_S3_BUCKET=s3_bucket, CFDB_S3_PREFIX="artifacts")
    key, result = build_artifacts(settings, "encode", "ENCFF000SAM")
    assert result.success
    listed = boto3.client("s3", endpoint_url=moto_server).list_objects_v2(Bucket=s3_bucket, Prefix=f"artifacts/{key}/")
    names = {o["Key"].rsplit("/", 1)[1] for o in listed["Contents"]}
    assert {"data.bam", "data.bam.bai", "manifest.json"} <= names
    assert not (tmp_path / "data" / "artifacts").exists()  # nothing went to local disk

    with TestClient(create_app(settings)) as client:
        info = client.get("/files/encode/ENCFF000SAM").json()
        assert info["state"] == "ready"
        whole = client.get(info["data_url"])
        part = client.get(info["data_url"], headers={"Range": "bytes=100-"})
        index = client.get(info["index_url"])
    assert whole.status_code == 200 and part.status_code == 206
    assert part.content == whole.content[100:]
    assert part.headers["content-range"] == f"bytes 100-{len(whole.content) - 1}/{len(whole.content)}"
    (tmp_path / "data.bam").write_bytes(whole.content)
    (tmp_path / "data.bam.bai").write_bytes(index.content)
    with pysam.AlignmentFile(str(tmp_path / "data.bam"), index_filename=str(tmp_path / "data.bam.bai")) as aln:
        assert aln.mapped == 1000
        assert sum(1 for _ in aln.fetch("chr1", 0, 1_000_000)) > 0


def test_an_object_deleted_from_s3_after_lookup_becomes_a_new_job(tmp_path, s3_settings, s3_bucket, moto_server):
    settings = s3_settings(CFDB_STORE=f"s3://{s3_bucket}")
    key, _ = build_artifacts(settings, "encode", "ENCFF000BED")
    boto3.client("s3", endpoint_url=moto_server).delete_object(Bucket=s3_bucket, Key=f"{key}/data.bed.gz")
    with TestClient(create_app(settings)) as client:
        response = client.get("/data/encode/ENCFF000BED")
    assert response.status_code == 202  # never a 200 with an empty body


def test_s3_redirect_sends_artifact_gets_to_a_presigned_url_that_honours_ranges(tmp_path, s3_settings, s3_bucket, moto_server):
    import httpx

    settings = s3_settings(CFDB_STORE=f"s3://{s3_bucket}/a", CFDB_S3_REDIRECT="true")
    key, _ = build_artifacts(settings, "encode", "ENCFF000BED")
    with TestClient(create_app(settings)) as client:
        response = client.get(f"/artifacts/{key}/data.bed.gz", headers={"Origin": "https://x"}, follow_redirects=False)
    assert response.status_code == 307
    assert response.headers["access-control-allow-origin"] == "*"
    location = response.headers["location"]
    assert location.startswith(f"{moto_server}/{s3_bucket}/a/{key}/data.bed.gz?")
    whole = httpx.get(location)
    part = httpx.get(location, headers={"Range": "bytes=10-19"})
    assert whole.status_code == 200 and part.status_code == 206 and part.content == whole.content[10:20]
