"""LocalStore on a real directory, and open_store."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from resources import ArtifactMissing, LocalStore, StoreError, open_store
from resources.store import MANIFEST
from resources.store_s3 import CHUNK, S3Store
from tests.helpers import manifest_for

KEY = "ab" * 32
DATA = random.Random(7).randbytes(CHUNK * 2 + 1234)  # spans several read chunks


def new_store(tmp_path: Path) -> LocalStore:
    store = LocalStore(root=str(tmp_path / "store"))
    store.check()
    return store


def write_source(tmp_path: Path, data: bytes = DATA, name: str = "work.bin") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def stored_names(store: LocalStore, key: str = KEY) -> list[str]:
    return sorted(p.name for p in (Path(store.root) / key).iterdir())




# --- writing ---------------------------------------------------------------------------------------


def test_put_file_stores_exact_content_and_leaves_no_temp_files(tmp_path):
    store = new_store(tmp_path)

    size = store.put_file(KEY, "data.bam", write_source(tmp_path))

    assert size == len(DATA)
    assert (Path(store.root) / KEY / "data.bam").read_bytes() == DATA
    assert stored_names(store) == ["data.bam"]


def test_put_file_on_the_same_filesystem_hard_links_and_survives_source_deletion(tmp_path):
    store = new_store(tmp_path)
    source = write_source(tmp_path)

    store.put_file(KEY, "data.bam", source)
    stored = Path(store.root) / KEY / "data.bam"
    assert os.stat(stored).st_ino == os.stat(source).st_ino  # linked, not copied
    source.unlink()

    assert stored.read_bytes() == DATA
    assert store.size(KEY, "data.bam") == len(DATA)


def test_put_file_replaces_an_existing_artifact(tmp_path):
    store = new_store(tmp_path)
    store.put_file(KEY, "data.bam", write_source(tmp_path, b"old contents", "old.bin"))

    size = store.put_file(KEY, "data.bam", write_source(tmp_path, b"new", "new.bin"))

    assert size == 3
    assert b"".join(store.iter_range(KEY, "data.bam", 0, 100)) == b"new"
    assert stored_names(store) == ["data.bam"]


def test_put_json_then_get_json_roundtrips_and_leaves_no_temp_files(tmp_path):
    store = new_store(tmp_path)
    value = {"stage": "sort", "sizes": [1, 2, 3], "nested": {"ok": True, "note": "é"}}

    store.put_json(KEY, "stage-sort.json", value)

    assert store.get_json(KEY, "stage-sort.json") == value
    assert stored_names(store) == ["stage-sort.json"]


def test_get_json_is_none_when_absent_corrupt_or_not_an_object(tmp_path):
    store = new_store(tmp_path)
    (Path(store.root) / KEY).mkdir()
    (Path(store.root) / KEY / "corrupt.json").write_text("{not json")
    (Path(store.root) / KEY / "list.json").write_text("[1, 2]")

    assert store.get_json(KEY, "absent.json") is None
    assert store.get_json(KEY, "corrupt.json") is None
    assert store.get_json(KEY, "list.json") is None


# --- manifests -------------------------------------------------------------------------------------


def test_manifest_is_none_until_put_manifest(tmp_path):
    store = new_store(tmp_path)
    store.put_file(KEY, "data.bam", write_source(tmp_path))
    store.put_file(KEY, "data.bam.bai", write_source(tmp_path, b"0123456789", "index.bin"))
    manifest = manifest_for(KEY, data=("data.bam", len(DATA)))
    assert store.manifest(KEY) is None

    store.put_manifest(KEY, manifest)

    assert store.manifest(KEY) == manifest
    assert store.valid_manifest(KEY) == manifest
    assert store.get_json(KEY, MANIFEST) == manifest.to_json()


def test_manifest_without_an_artifacts_mapping_is_not_a_manifest(tmp_path):
    store = new_store(tmp_path)
    store.put_json(KEY, MANIFEST, {"artifacts": ["data.bam"]})

    assert store.manifest(KEY) is None


def test_valid_manifest_is_none_when_a_listed_artifact_is_missing(tmp_path):
    store = new_store(tmp_path)
    store.put_file(KEY, "data.bam", write_source(tmp_path))
    store.put_manifest(KEY, manifest_for(KEY, data=("data.bam", len(DATA)), index=("data.bam.bai", 10)))

    assert store.manifest(KEY) is not None
    assert store.valid_manifest(KEY) is None


def test_valid_manifest_is_none_when_an_artifact_has_another_size(tmp_path):
    store = new_store(tmp_path)
    store.put_file(KEY, "data.bam", write_source(tmp_path))
    store.put_file(KEY, "data.bam.bai", write_source(tmp_path, b"0123456789", "index.bin"))
    store.put_manifest(KEY, manifest_for(KEY, data=("data.bam", len(DATA) + 1)))

    assert store.manifest(KEY) is not None
    assert store.valid_manifest(KEY) is None


# --- reading ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "start, end",
    [
        (0, len(DATA)),
        (0, 1),
        (5, 17),
        (CHUNK - 3, CHUNK + 3),  # across a chunk boundary
        (len(DATA) - 1, len(DATA)),
        (100, 100),  # zero-length
    ],
)
def test_iter_range_returns_exact_bytes(tmp_path, start, end):
    store = new_store(tmp_path)
    store.put_file(KEY, "data.bam", write_source(tmp_path))

    assert b"".join(store.iter_range(KEY, "data.bam", start, end)) == DATA[start:end]


@pytest.mark.parametrize("start", [0, len(DATA) - 10, len(DATA), len(DATA) + 5])
def test_iter_range_past_eof_stops_at_eof(tmp_path, start):
    store = new_store(tmp_path)
    store.put_file(KEY, "data.bam", write_source(tmp_path))

    assert b"".join(store.iter_range(KEY, "data.bam", start, len(DATA) + 1000)) == DATA[start:]


def test_iter_range_reads_in_bounded_chunks(tmp_path):
    store = new_store(tmp_path)
    store.put_file(KEY, "data.bam", write_source(tmp_path))

    sizes = [len(c) for c in store.iter_range(KEY, "data.bam", 0, len(DATA))]

    assert sizes == [CHUNK, CHUNK, 1234]


def test_iter_range_on_a_missing_artifact_raises_before_iteration(tmp_path):
    store = new_store(tmp_path)

    with pytest.raises(ArtifactMissing):
        store.iter_range(KEY, "data.bam", 0, 10)  # the call itself raises: no next() needed


def test_size_and_local_path_of_a_missing_artifact_raise_artifact_missing(tmp_path):
    store = new_store(tmp_path)

    with pytest.raises(ArtifactMissing):
        store.size(KEY, "data.bam")
    with pytest.raises(ArtifactMissing), store.local_path(KEY, "data.bam", tmp_path):
        pass


def test_local_path_is_the_stored_file(tmp_path):
    store = new_store(tmp_path)
    store.put_file(KEY, "data.bam", write_source(tmp_path))

    with store.local_path(KEY, "data.bam", tmp_path / "work") as path:
        assert path.read_bytes() == DATA


# --- names and locations ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key, name",
    [(KEY, "a/b"), (KEY, ".."), ("..", "data.bam"), ("a/b", "data.bam"), (KEY, ""), (KEY, "a\\b"), (KEY, ".")],
)
def test_names_that_could_escape_the_root_are_refused(tmp_path, key, name):
    store = new_store(tmp_path)
    source = write_source(tmp_path)

    for call in (
        lambda: store.put_file(key, name, source),
        lambda: store.put_json(key, name, {}),
        lambda: store.get_json(key, name),
        lambda: store.size(key, name),
        lambda: store.iter_range(key, name, 0, 1),
    ):
        with pytest.raises(StoreError, match="Invalid artifact path component"):
            call()
    assert sorted(p.name for p in Path(store.root).iterdir()) == []


def test_check_creates_a_missing_root(tmp_path):
    root = tmp_path / "a" / "b" / "store"

    LocalStore(root=str(root)).check()

    assert root.is_dir()


@pytest.mark.parametrize("under", ["", "sub"])
def test_check_fails_with_store_error_when_the_root_cannot_be_a_directory(tmp_path, under):
    blocker = tmp_path / "a-regular-file"
    blocker.write_text("not a directory")
    root = blocker / under if under else blocker

    with pytest.raises(StoreError, match="cannot be created"):
        LocalStore(root=str(root)).check()


def test_open_store_picks_s3_for_s3_urls_and_rejects_other_schemes():
    store = open_store("s3://bucket/some/prefix")
    assert isinstance(store, S3Store) and store.bucket == "bucket" and store.prefix == "some/prefix"
    with pytest.raises(StoreError, match="s3://bucket"):
        open_store("ftp://host/dir")


@pytest.mark.parametrize("as_uri", [False, True], ids=["path", "file-uri"])
def test_open_store_accepts_a_directory_or_file_uri(tmp_path, as_uri):
    location = (tmp_path / "store").as_uri() if as_uri else str(tmp_path / "store")

    store = open_store(location)

    assert isinstance(store, LocalStore)
    assert store.root == str(tmp_path / "store")
