"""The TBI built while a pipeline writes its bgzipped output (cfdb_assets.stream_index), with the
real bgzip/tabix and Debian's libhts: the same bytes as tabix, and nothing left behind when it
cannot finish. (The pipelines' own tests compare it with tabix on every interval fixture.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from cfdb_assets.stream_index import StreamIndex
from cfdb_assets.tools import ToolError, run
from synthetic import small as gf


@pytest.fixture()
def bed(tmp_path: Path) -> Path:
    records = [line.split("\t") for line in gf.bed_text(7).splitlines()]
    records = [fields for fields in records if len(fields) > 2 and fields[1].isdigit()]  # no header lines
    lines = ["\t".join(fields) for fields in sorted(records, key=lambda f: (f[0], int(f[1]), f))]
    path = tmp_path / "in.bed"
    path.write_text("".join(f"{line}\n" for line in lines))
    return path


def test_the_index_of_the_stream_is_the_one_tabix_writes(tmp_path, bed):
    index_path = tmp_path / "out.bed.gz.tbi"
    with StreamIndex("bed", index_path) as index:
        run(f"bgzip -c {bed.name} | tee -p out.bed.gz >&{index.fd}", tmp_path, pass_fds=index.pass_fds)
        assert index.succeeded()
    streamed = index_path.read_bytes()

    run("tabix -f -p bed out.bed.gz", tmp_path)

    assert streamed == index_path.read_bytes()
    assert not list(tmp_path.glob("*.partial"))


def test_a_reader_that_gives_up_leaves_no_index_and_the_data_whole(tmp_path, bed):
    # Not BGZF: htslib refuses at once; tee -p writes on to the data file all the same.
    index_path = tmp_path / "out.txt.tbi"
    with StreamIndex("bed", index_path) as index:
        run(f"tee -p out.txt < {bed.name} >&{index.fd}", tmp_path, pass_fds=index.pass_fds)
        assert not index.succeeded()

    assert (tmp_path / "out.txt").read_bytes() == bed.read_bytes()
    assert not index_path.exists() and not list(tmp_path.glob("*.partial"))


def test_a_failed_command_leaves_no_index(tmp_path, bed):
    index_path = tmp_path / "out.bed.gz.tbi"
    with StreamIndex("bed", index_path) as index, pytest.raises(ToolError):
        run(f"bgzip -c {bed.name} | head -c 3000 >&{index.fd}; exit 3", tmp_path, pass_fds=index.pass_fds)

    assert not index_path.exists() and not list(tmp_path.glob("*.partial"))
