"""The HTTP contract proven with the JavaScript readers Gosling 1.0.7 pins (@gmod/bam 1.1.18,
@gmod/tabix 1.5.11, generic-filehandle 3.1.1, installed from tests/js by scripts/setup.sh), run
under Node against the running API, from the local store and from S3 (moto's HTTP server)."""

from __future__ import annotations

import json
import random
import subprocess
from pathlib import Path

import pysam
import pytest

from synthetic.small import CHROMS
from resources import Settings
from serve.app import create_app
from tests.helpers import JS, LiveAPI, build_artifacts, gosling_read

CASES = [  # (dcc, local_id, reader)
    ("encode", "ENCFF000SAM", "bam"),
    ("4dn", "4DNFIVCF0001", "tabix"),
    ("encode", "ENCFF000BED", "tabix"),
    ("4dn", "4DNFIGFF0001", "tabix"),
]


def _regions(seed: int, n: int = 20) -> list[list]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        chrom = rng.choice(list(CHROMS))
        start = rng.randrange(0, CHROMS[chrom] - 100_000)
        out.append([chrom, start, start + rng.randrange(1_000, 100_000)])
    return out


def _pysam(reader: str, data: Path, index: Path, regions: list) -> list:
    if reader == "bam":
        with pysam.AlignmentFile(str(data), index_filename=str(index)) as aln:
            return [[[r.query_name, r.flag, r.reference_start] for r in aln.fetch(c, s, e)] for c, s, e in regions]
    with pysam.TabixFile(str(data), index=str(index)) as tbx:
        return [list(tbx.fetch(c, s, e)) for c, s, e in regions]


@pytest.fixture(params=["local", "s3"])
def settings_for_store(request, tmp_path, demo_dir):
    env = {"CFDB_DATA_DIR": str(tmp_path / "data"), "CFDB_CATALOG": str(demo_dir / "catalog.jsonl")}
    if request.param == "s3":
        env |= {"CFDB_S3_BUCKET": request.getfixturevalue("s3_bucket"),
                "AWS_ENDPOINT_URL": request.getfixturevalue("moto_server")}
    return Settings.from_environ(env)


def test_gosling_readers_get_the_same_records_as_pysam(settings_for_store, tmp_path):
    settings = settings_for_store
    for dcc, local_id, _ in CASES:
        assert build_artifacts(settings, dcc, local_id)[1].success
    with LiveAPI(create_app(settings)) as base:
        import httpx

        with httpx.Client(base_url=base) as client:
            for n, (dcc, local_id, reader) in enumerate(CASES):
                info = client.get(f"/files/{dcc}/{local_id}").json()
                assert info["state"] == "ready", info
                data = tmp_path / f"{local_id}.data"
                index = tmp_path / f"{local_id}.index"
                data.write_bytes(client.get(info["data_url"]).content)
                index.write_bytes(client.get(info["index_url"]).content)
                regions = _regions(100 + n)
                got = gosling_read(reader, base + info["data_url"], base + info["index_url"], regions)
                want = _pysam(reader, data, index, regions)
                assert sum(map(len, want)) > 0, local_id  # the regions do hit records
                for region, g, w in zip(regions, got, want, strict=True):
                    key = (lambda x: x) if reader == "tabix" else tuple
                    assert sorted(map(key, g)) == sorted(map(key, w)), (local_id, region)


def test_gosling_reads_a_passthrough_bigwig_and_a_csv_exactly_as_served(tmp_path, demo_dir):
    import pyBigWig

    chroms = {"chr1": 1_000_000, "chr2": 800_000}
    rng = random.Random(3)
    values = []
    for chrom, length in chroms.items():
        start = 0
        while start < length - 1000:
            span = rng.randrange(10, 500)
            values.append((chrom, start, start + span, round(rng.uniform(0, 100), 2)))
            start += span + rng.randrange(0, 300)
    bigwig = tmp_path / "signal.bw"
    writer = pyBigWig.open(str(bigwig), "w")
    writer.addHeader(list(chroms.items()))
    writer.addEntries([v[0] for v in values], [v[1] for v in values], ends=[v[2] for v in values],
                      values=[float(v[3]) for v in values])
    writer.close()
    csv = demo_dir / "sources" / "ENCFF000CSV.csv"
    catalog = tmp_path / "catalog.jsonl"
    docs = [
        {"submission": "encode", "local_id": "ENCFFBW", "md5": "c" * 32, "access_url": bigwig.as_uri(),
         "filename": "signal.bw", "file_format": {"id": "format:3006", "name": "bigWig"}},
        {"submission": "encode", "local_id": "ENCFFCSV", "md5": "d" * 32, "access_url": csv.as_uri(),
         "filename": "t.csv", "file_format": {"id": "format:3752", "name": "CSV"}},
    ]
    catalog.write_text("".join(json.dumps(d) + "\n" for d in docs))
    settings = Settings.from_environ({"CFDB_DATA_DIR": str(tmp_path / "data"), "CFDB_CATALOG": str(catalog)})
    regions = [[c, s, s + 20_000] for c, s in (("chr1", 0), ("chr1", 500_000), ("chr2", 123_456), ("chr2", 700_000))]
    with LiveAPI(create_app(settings)) as base:
        got = gosling_read("bigwig", f"{base}/data/encode/ENCFFBW", "-", regions)
        text = subprocess.run(["node", str(JS / "read_regions.js"), "csv", f"{base}/data/encode/ENCFFCSV"],
                              capture_output=True, text=True, timeout=60, check=True).stdout
    reader = pyBigWig.open(str(bigwig))
    for (chrom, start, end), features in zip(regions, got, strict=True):
        want = list(reader.intervals(chrom, start, end))
        assert len(want) > 0
        assert [(s, e, round(v, 2)) for s, e, v in features] == [(s, e, round(v, 2)) for s, e, v in want]
    assert json.loads(text) == csv.read_text()

