"""The stored records: round trips, and manifests written by earlier versions still read."""

from __future__ import annotations

import json

import pytest

from resources import Manifest, SortedStage
from resources.records import MANIFEST_VERSION, RecordError
from tests.helpers import manifest_for

KEY = "0123456789abcdef0123456789abcdef"

# A manifest exactly as the first release wrote it (no "version" field; cfdb_assets/assets.py dict literal).
V1_MANIFEST = json.loads("""{
  "artifacts": {
    "data": {"name": "data.bed.gz", "sha256": "aa", "size": 1234},
    "index": {"kind": "tbi", "name": "data.bed.gz.tbi", "sha256": "bb", "size": 99}
  },
  "cache_key": "0123456789abcdef0123456789abcdef",
  "created_at": "2026-11-28T06:00:00Z",
  "family": "intervals",
  "format": "BED",
  "index_type": "tbi",
  "options": {"compression_level": 4, "index": "auto"},
  "seconds": {"index": 0.1, "sorted": 2.5},
  "sorted": {
    "index": null, "name": "data.bed.gz", "options": {"compression_level": 4, "index": "auto"},
    "seconds": 2.5, "sha256": "aa", "size": 1234,
    "source": {"bytes": 5000, "checksum": "md5:00000000000000000000000000000000", "dcc": "encode",
               "filename": "x.bed", "format": "BED", "local_id": "ENCFF000BED", "md5": "00", "sha256": "11"},
    "tools": {"htslib": "bgzip (htslib) 1.16"}
  },
  "source": {"bytes": 5000, "checksum": "md5:00000000000000000000000000000000", "dcc": "encode",
             "filename": "x.bed", "format": "BED", "local_id": "ENCFF000BED", "md5": "00", "sha256": "11"},
  "tools": {"htslib": "bgzip (htslib) 1.16"}
}""")


def test_a_first_release_manifest_still_reads():
    manifest = Manifest.from_json(V1_MANIFEST)

    assert (manifest.data.name, manifest.data.size, manifest.data.sha256) == ("data.bed.gz", 1234, "aa")
    assert (manifest.index.name, manifest.index_type) == ("data.bed.gz.tbi", "tbi")
    assert manifest.source.local_id == "ENCFF000BED" and manifest.sorted.index is None
    assert manifest.created_at == "2026-11-28T06:00:00Z"


def test_rewriting_an_old_manifest_keeps_its_layout_and_adds_the_version():
    rewritten = Manifest.from_json(V1_MANIFEST).to_json()

    assert rewritten == {**V1_MANIFEST, "version": MANIFEST_VERSION}


def test_manifest_and_stage_round_trip_through_json():
    manifest = manifest_for(KEY, data=("data.bam", 100), index=("data.bam.bai", 10))

    assert Manifest.from_json(json.loads(json.dumps(manifest.to_json()))) == manifest
    assert SortedStage.from_json(json.loads(json.dumps(manifest.sorted.to_json()))) == manifest.sorted


@pytest.mark.parametrize(
    "change",
    [
        {"version": 99},
        {"artifacts": ["data.bam"]},
        {"artifacts": {"data": {"name": "data.bam", "size": "12", "sha256": "aa"}}},
        {"created_at": None},
        {"sorted": {"name": "data.bam"}},
    ],
    ids=["unknown-version", "artifacts-not-a-mapping", "size-not-a-number", "no-created-at", "partial-stage"],
)
def test_a_manifest_this_code_cannot_read_is_a_record_error(change):
    with pytest.raises(RecordError):
        Manifest.from_json({**V1_MANIFEST, **change})
