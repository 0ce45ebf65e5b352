"""One contract for every ArtifactStore: LocalStore on disk and S3Store on moto's HTTP server."""

from __future__ import annotations

import random

import pytest

from resources import ArtifactMissing, LocalStore, S3Store, StoreError
from tests.helpers import manifest_for

KEY = "0123456789abcdef0123456789abcdef"
DATA = random.Random(5).randbytes(300_000)


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    if request.param == "local":
        return LocalStore(root=str(tmp_path / "store"))
    bucket = request.getfixturevalue("s3_bucket")
    # A tiny multipart threshold, so the 300 kB artifact goes up in parts as large ones do.
    return S3Store(bucket=bucket, prefix="cache/v1", endpoint_url=request.getfixturevalue("moto_server"),
                   multipart_threshold=100_000)


def _source(tmp_path, data: bytes = DATA):
    path = tmp_path / "artifact.bin"
    path.write_bytes(data)
    return path


def test_put_then_size_and_exact_ranges(store, tmp_path):
    store.check()
    assert store.put_file(KEY, "data.bam", _source(tmp_path)) == len(DATA)
    assert store.size(KEY, "data.bam") == len(DATA)
    for start, end in [(0, len(DATA)), (0, 1), (12_345, 200_000), (len(DATA) - 7, len(DATA))]:
        assert b"".join(store.iter_range(KEY, "data.bam", start, end)) == DATA[start:end]


def test_missing_artifacts_raise_artifact_missing_before_any_byte(store):
    store.check()
    with pytest.raises(ArtifactMissing):
        store.size(KEY, "data.bam")
    with pytest.raises(ArtifactMissing):
        store.iter_range(KEY, "data.bam", 0, 10)  # raised by the call itself, not on iteration


def test_manifest_is_the_commit_marker(store, tmp_path):
    store.check()
    manifest = manifest_for(KEY, data=("data.bam", len(DATA)), index=("data.bam.bai", len(DATA)))
    store.put_file(KEY, "data.bam", _source(tmp_path))
    store.put_file(KEY, "data.bam.bai", _source(tmp_path))
    store.put_sorted_stage(KEY, manifest.sorted)
    assert store.manifest(KEY) is None
    store.put_manifest(KEY, manifest)
    assert store.manifest(KEY) == manifest
    assert store.valid_manifest(KEY) == manifest
    assert store.sorted_stage(KEY) == manifest.sorted


def test_s3_stage_records_carry_the_tag_the_lifecycle_rule_expires(request, tmp_path):
    import boto3

    store = S3Store(bucket=request.getfixturevalue("s3_bucket"), prefix="cache/v1",
                    endpoint_url=request.getfixturevalue("moto_server"))
    manifest = manifest_for(KEY, data=("data.bam", 1))
    store.put_sorted_stage(KEY, manifest.sorted)
    store.put_manifest(KEY, manifest)
    s3 = boto3.client("s3", endpoint_url=store.endpoint_url)

    def tags(name):
        return s3.get_object_tagging(Bucket=store.bucket, Key=f"cache/v1/{KEY}/{name}")["TagSet"]

    assert tags("stage-sorted.json") == [{"Key": "cfdb-stage", "Value": "true"}]
    assert tags("manifest.json") == []


def test_valid_manifest_rejects_a_size_mismatch(store, tmp_path):
    store.check()
    store.put_file(KEY, "data.bam", _source(tmp_path))
    store.put_file(KEY, "data.bam.bai", _source(tmp_path))
    store.put_manifest(KEY, manifest_for(KEY, data=("data.bam", len(DATA) + 1), index=("data.bam.bai", len(DATA))))
    assert store.manifest(KEY) is not None and store.valid_manifest(KEY) is None


def test_local_path_gives_the_artifact_bytes(store, tmp_path):
    store.check()
    store.put_file(KEY, "data.bam", _source(tmp_path))
    work = tmp_path / "work"
    work.mkdir()
    with store.local_path(KEY, "data.bam", work) as path:
        assert path.read_bytes() == DATA


def test_path_escapes_are_refused(store):
    with pytest.raises(StoreError):
        store.size(KEY, "../etc")
    with pytest.raises(StoreError):
        store.size("..", "data.bam")


def test_s3_objects_live_under_the_prefix_without_content_encoding(s3_bucket, moto_server, tmp_path):
    import boto3

    store = S3Store(bucket=s3_bucket, prefix="/cache/v1/", endpoint_url=moto_server, multipart_threshold=100_000)
    store.put_file(KEY, "data.bam", _source(tmp_path))
    head = boto3.client("s3", endpoint_url=moto_server).head_object(Bucket=s3_bucket, Key=f"cache/v1/{KEY}/data.bam")
    assert head["ContentLength"] == len(DATA)
    assert head["ContentType"] == "application/octet-stream"
    assert "ContentEncoding" not in head
    assert head["ETag"].endswith('-1"')  # went up as a multipart upload


def test_s3_check_fails_clearly_for_a_missing_bucket(moto_server, s3_bucket):
    with pytest.raises(StoreError, match="s3://no-such-bucket-here is not reachable"):
        S3Store(bucket="no-such-bucket-here", endpoint_url=moto_server).check()


def test_sets_list_each_key_with_its_objects_and_delete_set_removes_exactly_one(store, tmp_path):
    store.check()
    other = "f" * 32
    store.put_file(KEY, "data.bam", _source(tmp_path, b"x" * 10))
    store.put_json(KEY, "stage-sorted.json", {"v": 1})
    store.put_file(other, "data.bed.gz", _source(tmp_path, b"y" * 10))
    store.put_json(other, "manifest.json", {"v": 2})

    sets = {s.key: s for s in store.sets()}
    assert {k: (s.names, s.committed) for k, s in sets.items()} == {
        KEY: (("data.bam", "stage-sorted.json"), False), other: (("data.bed.gz", "manifest.json"), True)}
    assert all(s.modified.tzinfo is not None for s in sets.values())

    assert store.delete_set(KEY) == 2
    assert [s.key for s in store.sets()] == [other]
    assert store.size(other, "data.bed.gz") == 10


def test_partial_uploads_of_a_dead_writer_are_found_and_removed(store, tmp_path):
    from datetime import UTC, datetime, timedelta

    store.check()
    if isinstance(store, LocalStore):  # a writer killed between its temp file and the rename
        (tmp_path / "store" / KEY).mkdir(parents=True)
        (tmp_path / "store" / KEY / ".tmp-dead-data.bam").write_bytes(b"partial")
        expected = [f"{KEY}/.tmp-dead-data.bam"]
    else:  # a multipart upload that never completed
        key = store._object(KEY, "data.bam")
        store.client.create_multipart_upload(Bucket=store.bucket, Key=key)
        expected = [key]
    future = datetime.now(UTC) + timedelta(minutes=5)

    if isinstance(store, LocalStore):  # (moto reports every multipart upload as initiated in 2010)
        assert store.partial_uploads(datetime.now(UTC) - timedelta(hours=1), remove=True) == []  # too young
    assert store.partial_uploads(future, remove=False) == expected  # dry run: reported, kept
    assert store.partial_uploads(future, remove=True) == expected
    assert store.partial_uploads(future, remove=False) == []
    assert list(store.sets()) == []  # a partial upload is not a set
