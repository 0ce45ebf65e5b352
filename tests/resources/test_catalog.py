"""The Catalog contract, run against FileCatalog and MongoCatalog alike, plus what is specific to each."""

from __future__ import annotations

import bisect
import contextlib
import json
import logging
import os
import random
import threading
import uuid
from pathlib import Path

import mongomock
import pytest
from pydantic import PrivateAttr

from resources import Catalog, CatalogError, FileCatalog, FileRecord, MongoCatalog, S3Catalog, open_catalog

# `files` documents (materialized C2M2 records), inserted out of local_id order on purpose.
DOCS = [
    {
        "submission": "encode",
        "local_id": "ENCFF002",
        "md5": "md5-002",
        "sha256": "sha-002",
        "size_in_bytes": 2048,
        "access_url": "https://example.org/ENCFF002.bam",
        "filename": "ENCFF002.bam",
        "file_format": {"id": "format:2572", "name": "BAM"},
        "dcc": {"dcc_abbreviation": "ENCODE", "dcc_name": "not projected"},
        "data_access_level": "public",
        "extra": {"extra_files": ["ENCFF002.bam.bai"], "unprojected": 1},
    },
    {"submission": "encode", "local_id": "ENCFF010", "md5": "md5-010", "size_in_bytes": "4096"},
    {"submission": "encode", "local_id": "ENCFF001", "md5": "md5-001", "size_in_bytes": " 512 "},
    {"submission": "encode", "local_id": "encff001", "md5": "md5-lower-001", "size_in_bytes": "12kB"},
    {"submission": "encode", "local_id": "ENCFF003", "md5": "md5-003", "size_in_bytes": -5},
    {"submission": "encode", "local_id": "ENCFF004", "md5": "md5-004", "size_in_bytes": True},
    {"submission": "encode", "local_id": "ENCFF005", "md5": "md5-005", "size_in_bytes": "²"},
    {"submission": "4dn", "local_id": "4DNFI001", "md5": "md5-4dn", "size_in_bytes": "123456789012"},
]
ENCODE_IDS = sorted(d["local_id"] for d in DOCS if d["submission"] == "encode")


# --- building catalogs -----------------------------------------------------------------------------


def write_jsonl(path: Path, docs: list[dict]) -> Path:
    path.write_text("".join(json.dumps(doc) + "\n" for doc in docs), encoding="utf-8")
    return path


def replace_jsonl(path: Path, docs: list[dict] | None = None, text: str | None = None) -> Path:
    """Swap the catalog file atomically (a new file renamed over it), as a catalog export should."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text if text is not None else "".join(json.dumps(doc) + "\n" for doc in docs), encoding="utf-8")
    os.replace(tmp, path)
    return path


def reloaded(catalog, timeout: float = 10.0) -> None:
    """Wait for the background reload a request started (a JSON Lines catalog reloads off the request path)."""
    assert catalog.wait_reloaded(timeout), "the catalog reload did not finish"


def mongo_catalog(files: list[dict], raw: list[dict] = (), dccs: list[str] | None = None) -> MongoCatalog:
    # mongomock stands in for MongoDB: no MongoDB server can run on this machine. The in-memory client
    # is injected through the private `_client`; a real server is covered by the CFDB_TEST_MONGO_URI test.
    client = mongomock.MongoClient()
    if files:
        client["cfdb"]["files"].insert_many([dict(d) for d in files])
    if raw:
        client["cfdb"]["file"].insert_many([dict(d) for d in raw])
    catalog = MongoCatalog(uri="mongodb://mongomock.invalid:27017", dccs=dccs)
    catalog._client = client
    return catalog


def s3_catalog(request, docs: list[dict], **kwargs) -> S3Catalog:
    """A JSON Lines snapshot uploaded to a bucket on moto's S3 server."""
    import boto3

    bucket, endpoint = request.getfixturevalue("s3_bucket"), request.getfixturevalue("moto_server")
    body = "".join(json.dumps(d) + "\n" for d in docs).encode()
    boto3.client("s3", endpoint_url=endpoint).put_object(Bucket=bucket, Key="snapshots/catalog.jsonl", Body=body)
    return open_catalog(f"s3://{bucket}/snapshots/catalog.jsonl", endpoint_url=endpoint, **kwargs)


@pytest.fixture(params=["file", "s3", "mongo"])
def make_catalog(request, tmp_path):
    """Builds a catalog of the parametrized kind holding the given `files` documents."""

    def make(docs: list[dict]) -> Catalog:
        if request.param == "file":
            return FileCatalog(path=str(write_jsonl(tmp_path / "catalog.jsonl", docs)))
        if request.param == "s3":
            return s3_catalog(request, docs)
        return mongo_catalog(docs)

    return make


@pytest.fixture
def catalog(make_catalog) -> Catalog:
    return make_catalog(DOCS)


def page_through(catalog: Catalog, dcc: str, limit: int) -> list[str]:
    seen, after = [], None
    while page := catalog.list(dcc, limit, after):
        assert len(page) <= limit
        seen += [r.local_id for r in page]
        after = page[-1].local_id
    return seen


# --- the contract checks (shared with the real-MongoDB test) ---------------------------------------


def check_get_full_record(catalog: Catalog) -> None:
    assert catalog.get("encode", "ENCFF002") == FileRecord(
        dcc="encode",
        local_id="ENCFF002",
        md5="md5-002",
        sha256="sha-002",
        size=2048,
        access_url="https://example.org/ENCFF002.bam",
        filename="ENCFF002.bam",
        format_id="format:2572",
        format_name="BAM",
        dcc_abbreviation="ENCODE",
        data_access_level="public",
    )
    # Mongo projects `extra` down to the extra-files lists; the file keeps it whole. Both carry these:
    assert catalog.get("encode", "ENCFF002").extra["extra_files"] == ["ENCFF002.bam.bai"]


def check_get_dcc_case_insensitive_local_id_exact(catalog: Catalog) -> None:
    assert catalog.get("EnCoDe", "ENCFF001").md5 == "md5-001"
    assert catalog.get(" ENCODE ", "ENCFF001").md5 == "md5-001"
    assert catalog.get("encode", "encff001").md5 == "md5-lower-001"
    assert catalog.get("encode", "Encff001") is None
    assert catalog.get("encode", "ENCFF001 ") is None


def check_get_missing_is_none(catalog: Catalog) -> None:
    assert catalog.get("encode", "ENCFF999") is None
    assert catalog.get("4dn", "ENCFF001") is None  # right id, wrong DCC
    assert catalog.get("hubmap", "4DNFI001") is None


def check_size_int_or_string_and_junk_is_none(catalog: Catalog) -> None:
    sizes = {local_id: catalog.get("encode", local_id).size for local_id in ENCODE_IDS}
    assert sizes == {
        "ENCFF001": 512,
        "ENCFF002": 2048,
        "ENCFF003": None,
        "ENCFF004": None,
        "ENCFF005": None,
        "ENCFF010": 4096,
        "encff001": None,
    }
    assert catalog.get("4dn", "4DNFI001").size == 123456789012


def check_list_ordered_by_local_id(catalog: Catalog) -> None:
    records = catalog.list("ENCODE", 100)
    assert [r.local_id for r in records] == ENCODE_IDS
    assert all(r.dcc == "encode" for r in records)
    assert [r.local_id for r in catalog.list("4dn", 100)] == ["4DNFI001"]
    assert catalog.list("hubmap", 100) == []


def check_list_limit_and_after(catalog: Catalog) -> None:
    assert [r.local_id for r in catalog.list("encode", 3)] == ENCODE_IDS[:3]
    assert [r.local_id for r in catalog.list("encode", 2, after="ENCFF002")] == ["ENCFF003", "ENCFF004"]
    assert [r.local_id for r in catalog.list("encode", 100, after="ENCFF0025")] == ENCODE_IDS[2:]
    assert catalog.list("encode", 100, after=ENCODE_IDS[-1]) == []


def check_list_pages_through_everything_once(catalog: Catalog) -> None:
    for limit in (1, 2, 3, len(ENCODE_IDS), 100):
        assert page_through(catalog, "encode", limit) == ENCODE_IDS


CONTRACT = [
    check_get_full_record,
    check_get_dcc_case_insensitive_local_id_exact,
    check_get_missing_is_none,
    check_size_int_or_string_and_junk_is_none,
    check_list_ordered_by_local_id,
    check_list_limit_and_after,
    check_list_pages_through_everything_once,
]


# --- the contract, for both implementations --------------------------------------------------------


@pytest.mark.parametrize("check", CONTRACT, ids=lambda check: check.__name__.removeprefix("check_"))
def test_catalog_contract(catalog, check):
    check(catalog)


def test_check_passes_on_a_readable_catalog(catalog):
    catalog.check()  # raises CatalogError otherwise
    assert catalog.get("encode", "ENCFF001") is not None


def test_raw_style_format_string_gives_format_id_without_name(make_catalog):
    catalog = make_catalog([{"submission": "encode", "local_id": "R1", "file_format": "format:3003"}])

    record = catalog.get("encode", "R1")

    assert (record.format_id, record.format_name) == ("format:3003", None)


# --- MongoCatalog: `files` first, then the raw `file` collection -----------------------------------


def test_mongo_get_falls_back_to_the_raw_file_collection():
    raw = {"submission": "encode", "local_id": "RAW1", "md5": "md5-raw", "file_format": "format:2572",
           "size_in_bytes": "77"}
    catalog = mongo_catalog(DOCS, raw=[raw])

    record = catalog.get("ENCODE", "RAW1")

    assert (record.dcc, record.local_id, record.md5, record.size) == ("encode", "RAW1", "md5-raw", 77)
    assert (record.format_id, record.format_name) == ("format:2572", None)


def test_mongo_get_prefers_the_files_collection_over_the_raw_one():
    raw = {"submission": "encode", "local_id": "ENCFF001", "md5": "md5-from-raw", "file_format": "format:1"}
    catalog = mongo_catalog(DOCS, raw=[raw])

    assert catalog.get("encode", "ENCFF001").md5 == "md5-001"


def test_mongo_catalog_unreachable_server_is_a_catalog_error_without_credentials():
    catalog = MongoCatalog(uri="mongodb://reader:s3cret@127.0.0.1:1/?authSource=admin", timeout_ms=200)

    with pytest.raises(CatalogError, match="unreachable") as caught:
        catalog.check()

    assert "127.0.0.1:1" in str(caught.value)
    assert "s3cret" not in str(caught.value) and "reader" not in str(caught.value)


# --- FileCatalog: reloading and malformed files ----------------------------------------------------


def test_file_catalog_reloads_when_the_file_changes(tmp_path):
    path = write_jsonl(tmp_path / "catalog.jsonl", DOCS)
    catalog = FileCatalog(path=str(path))
    assert catalog.get("encode", "NEW1") is None

    write_jsonl(path, [*DOCS, {"submission": "encode", "local_id": "NEW1", "md5": "md5-new"}])

    assert catalog.get("encode", "NEW1") is None  # noticed: reloading in the background, the old records meanwhile
    reloaded(catalog)
    assert catalog.get("encode", "NEW1").md5 == "md5-new"
    assert [r.local_id for r in catalog.list("encode", 100)] == sorted([*ENCODE_IDS, "NEW1"])


def test_file_catalog_reloads_a_same_size_rewrite_with_a_new_mtime(tmp_path):
    path = write_jsonl(tmp_path / "catalog.jsonl", [{"submission": "encode", "local_id": "A", "md5": "aaaa"}])
    catalog = FileCatalog(path=str(path))
    assert catalog.get("encode", "A").md5 == "aaaa"
    mtime_ns = path.stat().st_mtime_ns

    write_jsonl(path, [{"submission": "encode", "local_id": "A", "md5": "bbbb"}])
    os.utime(path, ns=(mtime_ns + 10**9, mtime_ns + 10**9))

    assert catalog.get("encode", "A").md5 == "aaaa"
    reloaded(catalog)
    assert catalog.get("encode", "A").md5 == "bbbb"


def test_file_catalog_keeps_the_first_of_duplicated_records(tmp_path):
    docs = [{"submission": "encode", "local_id": "A", "md5": "first"},
            {"submission": "ENCODE", "local_id": "A", "md5": "second"}]
    catalog = FileCatalog(path=str(write_jsonl(tmp_path / "catalog.jsonl", docs)))

    assert catalog.get("encode", "A").md5 == "first"
    assert [r.md5 for r in catalog.list("encode", 10)] == ["first"]


def test_file_catalog_skips_blank_lines(tmp_path):
    path = tmp_path / "catalog.jsonl"
    path.write_text('\n{"submission": "encode", "local_id": "A"}\n   \n{"submission": "encode", "local_id": "B"}\n')

    assert [r.local_id for r in FileCatalog(path=str(path)).list("encode", 10)] == ["A", "B"]


@pytest.mark.parametrize("bad_line", ["{not json", '{"submission": "encode", "local_id": ', "[1, 2]", '"text"'])
def test_malformed_line_is_a_catalog_error_naming_the_line_number(tmp_path, bad_line):
    path = tmp_path / "catalog.jsonl"
    good = json.dumps({"submission": "encode", "local_id": "A"})
    path.write_text(f"{good}\n\n{bad_line}\n{good}\n", encoding="utf-8")

    with pytest.raises(CatalogError, match=r"Line 3 of the catalog file") as caught:
        FileCatalog(path=str(path)).check()

    assert str(path) in str(caught.value)


def test_missing_catalog_file_is_a_catalog_error_on_check(tmp_path):
    path = tmp_path / "absent.jsonl"

    with pytest.raises(CatalogError, match="cannot be read") as caught:
        FileCatalog(path=str(path)).check()

    assert str(path) in str(caught.value)


def test_catalog_path_that_is_a_directory_is_a_catalog_error_on_check(tmp_path):
    with pytest.raises(CatalogError, match="cannot be read"):
        FileCatalog(path=str(tmp_path)).check()


def test_catalog_file_deleted_after_loading_is_a_catalog_error(tmp_path):
    path = write_jsonl(tmp_path / "catalog.jsonl", DOCS)
    catalog = FileCatalog(path=str(path))
    catalog.check()
    path.unlink()

    with pytest.raises(CatalogError):
        catalog.get("encode", "ENCFF001")


def test_file_catalog_first_load_is_synchronous_and_failures_raise(tmp_path):
    path = tmp_path / "catalog.jsonl"
    path.write_text("{not json\n", encoding="utf-8")
    catalog = FileCatalog(path=str(path))

    for _ in range(2):  # nothing to fall back on: every request tries, and says why
        with pytest.raises(CatalogError, match="Line 1 of the catalog file"):
            catalog.list("encode", 10)
    replace_jsonl(path, DOCS)

    assert [r.local_id for r in catalog.list("encode", 100)] == ENCODE_IDS  # no reload thread involved
    assert catalog.wait_reloaded(0)


# --- JSON Lines catalogs: keyset paging and reloading off the request path -------------------------


def old_list(records: list[FileRecord], limit: int, after: str | None) -> list[FileRecord]:
    """The paging of before (a list of every id per request): the reference for the new one."""
    start = 0 if after is None else bisect.bisect_right([r.local_id for r in records], after)
    return records[start : start + limit]


def test_file_catalog_pages_like_the_previous_implementation(tmp_path):
    rng = random.Random(7)
    alphabet = "AaBb019_-.é"
    ids = {"".join(rng.choice(alphabet) for _ in range(rng.randint(1, 6))) for _ in range(400)}
    docs = [{"submission": rng.choice(["encode", "ENCODE", "4dn"]), "local_id": i, "md5": i} for i in ids]
    docs += [{"submission": "encode", "local_id": i, "md5": "dup"} for i in rng.sample(sorted(ids), 20)]
    rng.shuffle(docs)
    catalog = FileCatalog(path=str(write_jsonl(tmp_path / "catalog.jsonl", docs)))
    for dcc in ("encode", "4dn", "hubmap"):
        # The reference: first document wins, then sorted by local_id.
        first: dict[str, FileRecord] = {}
        for doc in docs:
            record = FileRecord.from_document(doc)
            if record.dcc == dcc:
                first.setdefault(record.local_id, record)
        records = sorted(first.values(), key=lambda r: r.local_id)
        afters = [None, "", "~", "A", "a0", *rng.sample(sorted(ids), 50), *(i + "0" for i in rng.sample(sorted(ids), 20))]
        for after in afters:
            for limit in (1, 3, 100, 1000):
                assert catalog.list(dcc, limit, after) == old_list(records, limit, after), (dcc, limit, after)


def test_a_page_is_a_copy_callers_cannot_corrupt_the_index(tmp_path):
    catalog = FileCatalog(path=str(write_jsonl(tmp_path / "catalog.jsonl", DOCS)))

    catalog.list("encode", 100).clear()

    assert [r.local_id for r in catalog.list("encode", 100)] == ENCODE_IDS


class GatedFileCatalog(FileCatalog):
    """A FileCatalog whose background reloads wait for `gate` before reading: a reload held open."""

    _gate: threading.Event = PrivateAttr(default_factory=threading.Event)
    _reading: threading.Event = PrivateAttr(default_factory=threading.Event)

    @contextlib.contextmanager
    def _lines(self):
        if self._index is not None:  # a reload, not the first load
            self._reading.set()
            assert self._gate.wait(10)
        with super()._lines() as lines:
            yield lines


def test_requests_during_a_reload_get_the_previous_records_from_one_reload(tmp_path):
    path = write_jsonl(tmp_path / "catalog.jsonl", DOCS)
    catalog = GatedFileCatalog(path=str(path))
    catalog.check()
    replace_jsonl(path, [*DOCS, {"submission": "encode", "local_id": "NEW1"}])

    assert catalog.get("encode", "NEW1") is None  # this request noticed the change and started the reload
    assert catalog._reading.wait(10)
    for _ in range(50):  # while it is under way: the old records, at once
        assert [r.local_id for r in catalog.list("encode", 100)] == ENCODE_IDS
        assert catalog.get("encode", "NEW1") is None
    assert not catalog.wait_reloaded(0)
    assert [t for t in threading.enumerate() if t.name == f"catalog-reload {path}"] == [catalog._reloader]  # just one

    catalog._gate.set()
    reloaded(catalog)

    assert [r.local_id for r in catalog.list("encode", 100)] == sorted([*ENCODE_IDS, "NEW1"])
    assert catalog.report().documents == len(DOCS) + 1


def test_rewrites_under_load_are_picked_up_and_no_request_fails_or_sees_a_partial_catalog(tmp_path):
    versions = [[{"submission": "encode", "local_id": f"V{v}-{i:05d}"} for i in range(2000 + v)] for v in range(4)]
    expected = [[d["local_id"] for d in docs[:100]] for docs in versions]
    path = replace_jsonl(tmp_path / "catalog.jsonl", versions[0])
    catalog = FileCatalog(path=str(path))
    catalog.check()
    seen, errors, stop = [[] for _ in range(4)], [], threading.Event()

    def reader(mine: list[int]):
        while not stop.is_set():
            try:
                mine.append(expected.index([r.local_id for r in catalog.list("encode", 100)]))
            except Exception as exc:  # noqa: BLE001 - any error, or a page of no version, fails the test
                errors.append(exc)

    readers = [threading.Thread(target=reader, args=(mine,)) for mine in seen]
    for thread in readers:
        thread.start()
    try:
        for v in range(1, len(versions)):
            replace_jsonl(path, versions[v])
            deadline = threading.Event()
            for _ in range(1000):  # eventually: poll, 10 s at most
                if catalog.list("encode", 1)[0].local_id.startswith(f"V{v}-"):
                    break
                deadline.wait(0.01)
            else:
                pytest.fail(f"version {v} was not picked up")
    finally:
        stop.set()
        for thread in readers:
            thread.join()

    assert errors == []
    assert all(mine and mine == sorted(mine) for mine in seen)  # each reader's versions only move forward
    assert catalog.report().documents == len(versions[-1])


def test_a_malformed_rewrite_keeps_the_old_records_and_reports_the_error_once(tmp_path, caplog):
    path = write_jsonl(tmp_path / "catalog.jsonl", DOCS)
    catalog = FileCatalog(path=str(path))
    catalog.check()
    good = json.dumps({"submission": "encode", "local_id": "NEW1"})

    with caplog.at_level("INFO", logger="cfdb.catalog"):
        replace_jsonl(path, text=f"{good}\n{{not json\n")
        for _ in range(3):
            assert [r.local_id for r in catalog.list("encode", 100)] == ENCODE_IDS
            reloaded(catalog)
            assert catalog.get("encode", "ENCFF001").md5 == "md5-001"

        assert catalog.reload_error().startswith(f"Line 2 of the catalog file {path} is not JSON")
        assert catalog.report().documents == len(DOCS)  # the report of the load being served
        [error] = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert error.levelname == "ERROR" and catalog.reload_error() in error.getMessage()
        assert "still serving the previous load" in error.getMessage()
        with pytest.raises(CatalogError, match="Line 2 of the catalog file"):
            catalog.check()  # synchronous: says why, keeps the records
        assert catalog.get("encode", "ENCFF001") is not None

        replace_jsonl(path, [*DOCS, {"submission": "encode", "local_id": "NEW1"}])  # fixed
        catalog.list("encode", 1)
        reloaded(catalog)

    assert catalog.get("encode", "NEW1") is not None
    assert catalog.reload_error() is None


class FlakyFileCatalog(FileCatalog):
    """A FileCatalog whose reloads fail `_failures` times (a transient read error), then read."""

    _failures: int = PrivateAttr(default=0)
    _attempts: int = PrivateAttr(default=0)

    @contextlib.contextmanager
    def _lines(self):
        if self._index is not None:
            self._attempts += 1
            if self._attempts <= self._failures:
                raise CatalogError(f"The catalog file {self.path} cannot be read (Input/output error); ...")
        with super()._lines() as lines:
            yield lines


@pytest.mark.parametrize(("retry_s", "picked_up"), [(0.0, True), (3600.0, False)])
def test_a_failed_reload_of_the_same_source_is_retried_after_the_backoff(tmp_path, retry_s, picked_up):
    path = write_jsonl(tmp_path / "catalog.jsonl", DOCS)
    catalog = FlakyFileCatalog(path=str(path), reload_retry_s=retry_s)
    catalog._failures = 1
    catalog.check()
    replace_jsonl(path, [*DOCS, {"submission": "encode", "local_id": "NEW1"}])

    catalog.list("encode", 1)
    reloaded(catalog)
    assert "Input/output error" in catalog.reload_error()
    for _ in range(2):
        catalog.list("encode", 1)  # retried at once with no backoff, never within it
        reloaded(catalog)

    assert (catalog.get("encode", "NEW1") is not None) is picked_up
    assert catalog._attempts == (2 if picked_up else 1)


# --- open_catalog ----------------------------------------------------------------------------------


@pytest.mark.parametrize("as_uri", [False, True], ids=["path", "file-uri"])
def test_open_catalog_picks_file_catalog_for_a_path_or_file_uri(tmp_path, as_uri):
    path = write_jsonl(tmp_path / "catalog.jsonl", DOCS)

    catalog = open_catalog(path.as_uri() if as_uri else str(path))

    assert isinstance(catalog, FileCatalog)
    assert catalog.path == str(path)
    assert catalog.get("encode", "ENCFF001").md5 == "md5-001"


@pytest.mark.parametrize("uri", ["mongodb://db.example:27017", "mongodb+srv://u:p@cluster.example/"])
def test_open_catalog_picks_mongo_catalog_for_mongodb_uris(uri):
    catalog = open_catalog(uri, database="cfdb_alt")

    assert isinstance(catalog, MongoCatalog)
    assert (catalog.uri, catalog.database) == (uri, "cfdb_alt")


@pytest.mark.parametrize("location", ["http://x", "https://example.org/catalog.jsonl", "ftp://host/c.jsonl"])
def test_open_catalog_rejects_other_schemes_listing_the_accepted_ones(location):
    with pytest.raises(CatalogError) as caught:
        open_catalog(location)

    message = str(caught.value)
    assert location in message
    assert all(scheme in message for scheme in ("file path", "file://", "mongodb://", "mongodb+srv://"))


# --- the S3 snapshot ------------------------------------------------------------------------------


def test_s3_catalog_reloads_when_the_snapshot_changes(request):
    first = s3_catalog(request, DOCS[:1])
    catalog = S3Catalog(bucket=first.bucket, key=first.key, endpoint_url=first.endpoint_url, refresh_s=0)
    assert [r.local_id for r in catalog.list("encode", 10)] == [DOCS[0]["local_id"]]

    s3_catalog(request, DOCS)  # a new snapshot under the same key: a new ETag

    assert len(catalog.list("encode", 100)) == 1  # the previous snapshot while the new one loads
    reloaded(catalog)
    assert len(catalog.list("encode", 100)) == len(ENCODE_IDS)


def test_s3_snapshot_that_fails_to_download_keeps_the_previous_one(request, caplog):
    first = s3_catalog(request, DOCS[:1])
    catalog = S3Catalog(bucket=first.bucket, key=first.key, endpoint_url=first.endpoint_url, refresh_s=0)
    catalog.check()
    s3_catalog(request, DOCS)
    catalog.client.get_object = lambda **kwargs: (_ for _ in ()).throw(OSError("connection reset"))

    with caplog.at_level("ERROR", logger="cfdb.catalog"):
        assert len(catalog.list("encode", 100)) == 1
        reloaded(catalog)
        assert len(catalog.list("encode", 100)) == 1

    assert "cannot be read (OSError)" in catalog.reload_error()
    assert [r.levelname for r in caplog.records if r.name == "cfdb.catalog"] == ["ERROR"]


def test_s3_catalog_that_cannot_be_read_is_a_catalog_error_naming_the_variable(request):
    catalog = open_catalog(f"s3://{request.getfixturevalue('s3_bucket')}/missing.jsonl",
                           endpoint_url=request.getfixturevalue("moto_server"))

    with pytest.raises(CatalogError, match=r"cannot be read .*check CFDB_CATALOG"):
        catalog.check()


@pytest.mark.parametrize("location", ["s3://", "s3://bucket", "s3://bucket/"])
def test_s3_catalog_location_needs_a_bucket_and_a_key(location):
    with pytest.raises(CatalogError, match=r"expected s3://bucket/key\.jsonl"):
        open_catalog(location)


# --- what a load skips ------------------------------------------------------------------------------

SKIPPED_DOCS = [
    {"submission": "encode", "local_id": "ENCFF100", "md5": "a" * 32},
    {"submission": "ENCODE-DCC", "local_id": "ENCFF101"},  # another spelling: not a served DCC
    {"submission": "lincs", "local_id": "LINCS1"},
    {"submission": "encode", "md5": "b" * 32},  # no local_id
]


def test_file_catalog_reports_and_logs_what_it_skipped_and_serves_the_rest(tmp_path, caplog):
    path = write_jsonl(tmp_path / "catalog.jsonl", SKIPPED_DOCS)
    catalog = FileCatalog(path=str(path), dccs=["4dn", "encode", "hubmap"])

    with caplog.at_level("INFO", logger="cfdb.catalog"):
        catalog.check()

    report = catalog.report()
    assert report.documents == 4
    assert report.skipped == {"submission is not a served DCC": 2, "no local_id": 1}
    assert report.examples == ("line 2 (encode-dcc/ENCFF101)", "line 3 (lincs/LINCS1)", "line 4 (encode/no local_id)")
    [line] = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert "skipped 3 of 4 documents" in line and "CFDB_DCCS" in line and "encode-dcc/ENCFF101" in line
    assert [r.local_id for r in catalog.list("encode", 10)] == ["ENCFF100"]


def test_mongo_catalog_counts_unreachable_documents_at_check():
    catalog = mongo_catalog(SKIPPED_DOCS, dccs=["4dn", "encode", "hubmap"])

    catalog.check()

    report = catalog.report()
    assert report.documents == 4
    assert report.skipped == {"no local_id": 1, "submission is not a served DCC": 2}
    assert "ENCODE-DCC/ENCFF101" in report.examples


def test_a_clean_catalog_reports_nothing_skipped(tmp_path):
    catalog = FileCatalog(path=str(write_jsonl(tmp_path / "c.jsonl", SKIPPED_DOCS[:1])), dccs=["encode"])
    catalog.check()

    assert (catalog.report().documents, catalog.report().skipped) == (1, {})


# --- a real MongoDB, when one is available ---------------------------------------------------------


@pytest.mark.skipif(not os.environ.get("CFDB_TEST_MONGO_URI"), reason="CFDB_TEST_MONGO_URI is not set")
def test_mongo_catalog_contract_on_a_real_server():
    import pymongo

    uri = os.environ["CFDB_TEST_MONGO_URI"]
    database = f"cfdb_test_{uuid.uuid4().hex[:12]}"
    client = pymongo.MongoClient(uri, serverSelectionTimeoutMS=5000)
    try:
        client[database]["files"].insert_many([dict(d) for d in DOCS])
        client[database]["file"].insert_one(
            {"submission": "encode", "local_id": "RAW1", "md5": "md5-raw", "file_format": "format:2572"}
        )
        catalog = MongoCatalog(uri=uri, database=database)
        catalog.check()
        for check in CONTRACT:
            check(catalog)
        raw = catalog.get("Encode", "RAW1")
        assert (raw.md5, raw.format_id, raw.format_name) == ("md5-raw", "format:2572", None)
    finally:
        client.drop_database(database)
        client.close()
