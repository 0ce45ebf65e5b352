"""The two build steps as plain functions: real tools on the demo files, no Dagster."""

from __future__ import annotations

import json
from pathlib import Path
from dataclasses import replace

import pysam
import pytest

from cfdb_assets.build import Builder, BuildError
from cfdb_assets.pipelines import ToolOptions
from cfdb_assets.planning import OutputOptions, plan_for
from resources import FileCatalog, LocalStore, SourceFetcher, SourceRow

OUTPUT = OutputOptions(compression_level=4)


@pytest.fixture
def builder(tmp_path, demo_dir) -> Builder:
    store = LocalStore(root=str(tmp_path / "store"))
    store.check()
    return Builder(
        catalog=FileCatalog(path=str(demo_dir / "catalog.jsonl")),
        store=store,
        fetcher=SourceFetcher(),
        tools=ToolOptions(threads=2, sort_memory="128M", compression_level=OUTPUT.compression_level),
        output=OUTPUT,
        work_dir=tmp_path / "work",
    )


def source_of(builder: Builder, dcc: str, local_id: str) -> tuple[str, SourceRow]:
    record = builder.catalog.get(dcc, local_id)
    plan = plan_for(record, builder.output)
    return plan.cache_key, SourceRow(plan.cache_key, dcc, local_id, plan.route.format, plan.route.family,
                                     plan.checksum, record.size)


def test_sorted_then_index_commit_a_set_the_store_calls_ready(builder):
    key, source = source_of(builder, "4dn", "4DNFIVCF0001")

    stage, reused = builder.sorted(key, source)
    assert not reused and builder.store.manifest(key) is None  # nothing visible before the index step
    manifest, reused = builder.index(key)

    assert not reused and builder.store.valid_manifest(key) == manifest
    assert (manifest.data.name, manifest.index.name, manifest.index_type) == ("data.vcf.gz", "data.vcf.gz.tbi", "tbi")
    assert manifest.sorted == stage and manifest.source.local_id == "4DNFIVCF0001"
    data = builder.store._path(key, manifest.data.name)
    with pysam.TabixFile(str(data), index=str(data) + ".tbi") as tbx:
        assert len(list(tbx.fetch(tbx.contigs[0]))) > 0
    assert list((builder.work_dir).iterdir()) == []  # scratch removed


def test_a_second_build_reuses_what_is_stored_unless_forced(builder):
    key, source = source_of(builder, "encode", "ENCFF000SAM")
    builder.sorted(key, source)
    first, _ = builder.index(key)

    assert builder.sorted(key, source)[1] is True
    assert builder.index(key) == (first, True)
    rebuilt, reused = builder.index(key, force=True)
    assert not reused and rebuilt.data == first.data  # same bytes: the ETag stays true


def test_a_record_whose_checksum_changed_is_refused_with_a_sentence(builder, tmp_path, demo_dir):
    key, source = source_of(builder, "encode", "ENCFF000BED")
    changed = tmp_path / "catalog.jsonl"
    docs = [json.loads(line) for line in (demo_dir / "catalog.jsonl").read_text().splitlines()]
    for doc in docs:
        if doc["local_id"] == "ENCFF000BED":
            doc["md5"] = "f" * 32
    changed.write_text("".join(json.dumps(d) + "\n" for d in docs))

    with pytest.raises(BuildError, match=r"changed since partition .* was requested"):
        replace(builder, catalog=FileCatalog(path=str(changed))).sorted(key, source)
    assert builder.store.sorted_stage(key) is None


def test_index_without_sorted_data_is_a_build_error(builder):
    key, _ = source_of(builder, "encode", "ENCFF000BED")

    with pytest.raises(BuildError, match="has no sorted data in the store"):
        builder.index(key)


def test_the_scratch_of_a_dead_worker_is_swept_and_a_live_one_kept(builder, tmp_path):
    import subprocess
    import sys

    from cfdb_assets.build import sweep_stale_scratch

    # A real worker holds a scratch directory, and is killed outright before it can clean up.
    code = ("import sys, time; from pathlib import Path; from cfdb_assets.build import Builder;"
            "b = Builder(None, None, None, None, None, Path(sys.argv[1]));"
            "ctx = b.scratch('deadbeef'); p = ctx.__enter__(); (p / 'big.tmp').write_bytes(b'x' * 1000);"
            "print(p.name, flush=True); time.sleep(60)")
    worker = subprocess.Popen([sys.executable, "-c", code, str(builder.work_dir)], stdout=subprocess.PIPE, text=True,
                              cwd=str(Path(__file__).resolve().parents[2]))
    dead = worker.stdout.readline().strip()
    with builder.scratch("live") as live:
        assert sweep_stale_scratch(builder.work_dir) == []  # both owners alive
        worker.kill()
        worker.wait()

        assert sweep_stale_scratch(builder.work_dir) == [dead]
        assert live.exists() and not (builder.work_dir / dead).exists()


def test_each_step_reports_what_it_is_doing(builder):
    reports: list[str] = []
    builder = replace(builder, progress=reports.append)
    key, source = source_of(builder, "4dn", "4DNFIVCF0001")

    builder.sorted(key, source)
    builder.index(key)

    assert reports[0] == "fetching" and reports[-1] == "storing the sorted data"
    assert "indexing" not in reports  # the sort wrote the index in the same pass (cfdb_assets.stream_index)
    # The last byte arrived: the tools go on (the demo source's catalog size is known).
    assert any(r.startswith("fetching and sorting ") and "received" not in r for r in reports), reports


def test_fetch_progress_says_bytes_of_total_at_most_every_interval(monkeypatch):
    from cfdb_assets import build

    clock = iter([0.0, 0.5, 2.5, 3.0, 5.0, 5.5])
    monkeypatch.setattr(build.time, "monotonic", lambda: next(clock))
    reports: list[str] = []
    progress = build.FetchProgress(reports.append, total=2_000_000_000, after="sorting")  # reads the clock once

    for received in (1_000, 150_000_000, 160_000_000, 1_500_000_000, 2_000_000_000):
        progress(received)

    assert reports == ["fetching and sorting: 150.0 MB of 2.0 GB received",
                       "fetching and sorting: 1.5 GB of 2.0 GB received", "sorting"]


def test_a_file_source_is_read_in_place_and_never_linked_into_the_store(tmp_path):
    # A coordinate-sorted BAM from file://: the artifact is the source's bytes, but a copy, so that
    # whoever owns the file cannot change a published artifact by writing to it.
    import subprocess

    from synthetic.demo import document
    from synthetic.small import sam_text, write_bam

    unsorted = write_bam(sam_text(7), tmp_path / "u.bam")
    source = tmp_path / "sorted.bam"
    subprocess.run(["samtools", "sort", "--no-PG", "-o", str(source), str(unsorted)], check=True)
    catalog = tmp_path / "catalog.jsonl"
    catalog.write_text(json.dumps(document("encode", "ENCFFSORTED", source, ("format:2572", "BAM"))) + "\n")
    store = LocalStore(root=str(tmp_path / "store"))
    builder = Builder(FileCatalog(path=str(catalog)), store, SourceFetcher(),
                      ToolOptions(threads=2, sort_memory="128M", compression_level=4), OUTPUT, tmp_path / "work")
    key, row = source_of(builder, "encode", "ENCFFSORTED")

    stage, _ = builder.sorted(key, row)

    stored = store._path(key, stage.data.name)
    assert stored.read_bytes() == source.read_bytes()
    assert stored.stat().st_ino != source.stat().st_ino and source.stat().st_nlink == 1
    assert stage.source.bytes == source.stat().st_size and stage.data.sha256 == stage.source.sha256


def test_bytes_that_fail_the_checksum_publish_nothing_even_when_sorted_while_arriving(builder, tmp_path):
    key, row = source_of(builder, "encode", "ENCFF000BED")
    record = builder.catalog.get("encode", "ENCFF000BED")
    source = Path(record.access_url.removeprefix("file://"))
    original = source.read_bytes()
    try:
        source.write_bytes(original.replace(b"chr1\t", b"chr2\t", 1))  # same size, other bytes
        from resources import ChecksumMismatch
        with pytest.raises(ChecksumMismatch):
            builder.sorted(key, row)
    finally:
        source.write_bytes(original)
    assert builder.store.sorted_stage(key) is None and not builder.store.has(key, _artifact("data.bed.gz"))
    assert not (Path(builder.store.root) / key).exists() or list((Path(builder.store.root) / key).iterdir()) == []


def _artifact(name: str):
    from resources import Artifact

    return Artifact(name, 1, "0" * 64)
