"""The spool (resources/spool.py): readers consume a download while it arrives, see its failure,
and nothing is verified until the last byte. Its chunks come from a generator the test steps by
hand, so that "before the last byte" is a fact of the test, not a timing."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import pytest

from cfdb_assets.tools import run
from resources import ChecksumMismatch, FetchError, PermanentFetchError
from resources.spool import Spool

HALF = b"chr1\t10\t20\n" * 50_000
WHOLE = HALF * 2


def _stepped(gate: threading.Event, fail_with: Exception | None = None, offsets: list[int] | None = None):
    """Chunks: the first half, then (once ``gate`` is set) the second half or ``fail_with``."""
    def chunks(offset: int):
        if offsets is not None:
            offsets.append(offset)
        if offset == 0:
            yield HALF
        gate.wait(10)
        if fail_with is not None:
            raise fail_with
        yield WHOLE[max(offset, len(HALF)):]
    return chunks


def test_a_reader_gets_the_first_bytes_before_the_last_arrived(tmp_path):
    gate = threading.Event()
    with Spool(_stepped(gate), tmp_path / "source", f"md5:{hashlib.md5(WHOLE).hexdigest()}", "test") as spool:
        reader = spool.reader()
        assert reader.read(len(HALF)) == HALF  # the second half is still held back
        gate.set()
        assert reader.read() == HALF
        got = spool.result()
    assert (got.size, got.sha256) == (len(WHOLE), hashlib.sha256(WHOLE).hexdigest())


def test_a_tool_reads_the_download_as_it_arrives(tmp_path):
    gate = threading.Event()
    with Spool(_stepped(gate), tmp_path / "source", None, "test") as spool:
        # `head -c` exits after the first half: the tool never waits for the held-back bytes.
        assert run(f"head -c {len(HALF)} | wc -c", tmp_path, stdin=spool.reader()).strip() == str(len(HALF))
        gate.set()
        assert run("wc -l", tmp_path, stdin=spool.reader()).strip() == str(WHOLE.count(b"\n"))


def test_a_failed_download_fails_the_reader_and_the_tool_with_its_error(tmp_path):
    gate = threading.Event()
    gate.set()
    error = PermanentFetchError("The upstream answered HTTP 404.")
    with Spool(_stepped(gate, error), tmp_path / "source", None, "test") as spool:
        with pytest.raises(PermanentFetchError, match="404"):
            spool.reader().read()
        # wc would exit 0 on the half it got: the download's error is raised, not its count.
        with pytest.raises(PermanentFetchError, match="404"):
            run("wc -c", tmp_path, stdin=spool.reader())
        with pytest.raises(PermanentFetchError):
            spool.result()


def test_the_checksum_is_verified_at_the_end(tmp_path):
    gate = threading.Event()
    gate.set()
    with Spool(_stepped(gate), tmp_path / "source", "sha256:" + "0" * 64, "the test source") as spool:
        reader = spool.reader()
        assert reader.read(len(WHOLE)) == WHOLE  # the bytes are all there, but are not the catalog's:
        with pytest.raises(ChecksumMismatch, match=r"expected sha256 0+, got .* from the test source"):
            reader.read()  # a reader reaching the end sees it (a tool fails) ...
        with pytest.raises(ChecksumMismatch):
            spool.result()  # ... and so does the step, before it stores anything


def test_a_transient_failure_resumes_after_the_bytes_already_in(tmp_path):
    gate, offsets, calls = threading.Event(), [], []
    gate.set()

    def flaky(offset: int):
        calls.append(offset)
        if len(calls) == 1:
            return _stepped(gate, FetchError("reset mid-body"), offsets)(offset)
        return _stepped(gate, None, offsets)(offset)

    with Spool(flaky, tmp_path / "source", f"md5:{hashlib.md5(WHOLE).hexdigest()}", "test", backoff_s=0) as spool:
        got = spool.result()
        assert spool.reader().read() == WHOLE
    assert calls == [0, len(HALF)] and got.size == len(WHOLE)


def test_retries_are_bounded(tmp_path):
    gate = threading.Event()
    gate.set()
    spool = Spool(_stepped(gate, FetchError("reset")), tmp_path / "source", None, "test", retries=2, backoff_s=0)
    with spool, pytest.raises(FetchError, match="reset"):
        spool.result()


def test_closing_stops_the_download(tmp_path):
    gate = threading.Event()
    spool = Spool(_stepped(gate), tmp_path / "source", None, "test")
    spool.reader().read(len(HALF))
    gate.set()
    spool.close()  # returns: the thread ended
    assert Path(tmp_path / "source").stat().st_size <= len(WHOLE)
