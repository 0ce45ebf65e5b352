"""Format routing (EDAM id, then name) and the plan derived from it."""

from __future__ import annotations

import pytest

from cfdb_assets.formats import ALIGNMENTS, INTERVALS, PASSTHROUGH, RAW, Route, route_for
from cfdb_assets.keys import cache_key
from cfdb_assets.assets import Tools
from cfdb_assets.planning import OutputOptions, plan_for
from resources import Settings
from resources.catalog import FileRecord

MD5 = "d41d8cd98f00b204e9800998ecf8427e"
SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
OPTIONS = OutputOptions(compression_level=4)

ROUTES = [
    # (EDAM id, name, format, family, data_name, preset)
    ("format:2572", "BAM", "BAM", ALIGNMENTS, "data.bam", None),
    ("format:2573", "SAM", "SAM", ALIGNMENTS, "data.bam", None),
    ("format:3016", "VCF", "VCF", INTERVALS, "data.vcf.gz", "vcf"),
    ("format:1975", "GFF3", "GFF3", INTERVALS, "data.gff3.gz", "gff"),
    ("format:2306", "GTF", "GTF", INTERVALS, "data.gff3.gz", "gff"),
    ("format:3003", "BED", "BED", INTERVALS, "data.bed.gz", "bed"),
    ("format:3613", "narrowPeak", "narrowPeak", INTERVALS, "data.bed.gz", "bed"),
    ("format:3614", "broadPeak", "broadPeak", INTERVALS, "data.bed.gz", "bed"),
]


@pytest.mark.parametrize(("edam", "name", "fmt", "family", "data_name", "preset"), ROUTES)
def test_processed_formats_route_by_edam_id(edam, name, fmt, family, data_name, preset):
    route = route_for(edam, None)

    assert (route.format, route.family, route.data_name, route.preset) == (fmt, family, data_name, preset)
    assert route.processed is True


@pytest.mark.parametrize(("edam", "name", "fmt", "family", "data_name", "preset"), ROUTES)
def test_processed_formats_route_by_name_when_the_id_is_missing(edam, name, fmt, family, data_name, preset):
    assert route_for(None, name) == route_for(edam, None)
    assert route_for("format:9999", name) == route_for(edam, None)  # unknown id: the name decides


def test_edam_id_wins_over_name():
    route = route_for("format:3003", "VCF")

    assert (route.format, route.family, route.data_name) == ("BED", INTERVALS, "data.bed.gz")


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("narrowpeak", "narrowPeak"),
        ("NarrowPeak", "narrowPeak"),
        ("NARROWPEAK", "narrowPeak"),
        ("BAM", "BAM"),
        ("bam", "BAM"),
        ("  Bed ", "BED"),
        ("gff", "GFF3"),
        ("Gtf", "GTF"),
        ("BigWig", "bigWig"),
    ],
)
def test_name_fallback_is_case_insensitive(name, fmt):
    assert route_for(None, name).format == fmt


def test_edam_id_is_case_and_whitespace_insensitive():
    assert route_for(" FORMAT:3003 ", None).format == "BED"


def test_gtf_is_converted_to_bgzipped_gff3():
    route = route_for("format:2306", "GTF")

    assert route.family == INTERVALS
    assert route.data_name.endswith(".gff3.gz")
    assert route.preset == "gff"


@pytest.mark.parametrize(
    ("edam", "name", "fmt", "media_type"),
    [
        ("format:3752", "CSV", "CSV", "text/csv"),
        ("format:3475", "TSV", "TSV", "text/tab-separated-values"),
        ("format:3006", "bigWig", "bigWig", "application/octet-stream"),
    ],
)
def test_passthrough_formats_keep_upstream_bytes_with_their_media_type(edam, name, fmt, media_type):
    for route in (route_for(edam, None), route_for(None, name), route_for(None, name.lower())):
        assert route == Route(fmt, PASSTHROUGH, media_type=media_type)
        assert route.processed is False
        assert route.data_name is None and route.preset is None


@pytest.mark.parametrize(
    ("edam", "name", "fmt"),
    [
        ("format:1930", "FASTQ", "FASTQ"),
        (None, "FASTQ", "FASTQ"),
        ("format:3462", "CRAM", "CRAM"),
        (None, "CRAM", "CRAM"),
        ("format:3462", None, "format:3462"),
        (None, " fasta ", "fasta"),
        (None, None, "unknown"),
        ("", "", "unknown"),
        ("  ", "  ", "unknown"),
    ],
)
def test_unclaimed_formats_are_raw(edam, name, fmt):
    route = route_for(edam, name)

    assert route == Route(fmt, RAW)
    assert route.processed is False
    assert route.media_type == "application/octet-stream"


# --- plan_for --------------------------------------------------------------------------------


def _record(format_id=None, format_name=None, md5=None, sha256=None) -> FileRecord:
    return FileRecord(
        dcc="encode", local_id="ENCFF000X", format_id=format_id, format_name=format_name, md5=md5, sha256=sha256
    )


def test_plan_for_passthrough_has_no_key_and_no_refusal():
    plan = plan_for(_record("format:3752", "CSV", md5=MD5), OPTIONS)

    assert plan.route.family == PASSTHROUGH
    assert (plan.checksum, plan.cache_key, plan.refusal) == (None, None, None)


def test_plan_for_raw_has_no_key():
    plan = plan_for(_record("format:1930", "FASTQ", md5=MD5), OPTIONS)

    assert plan.route.family == RAW
    assert plan.cache_key is None and plan.refusal is None


def test_plan_for_bed_without_checksum_is_refused_without_a_key():
    plan = plan_for(_record("format:3003", "BED"), OPTIONS)

    assert plan.route.format == "BED"
    assert plan.cache_key is None and plan.checksum is None
    assert plan.refusal == (
        "Cannot preprocess this file: the catalog record has no md5 or sha256, so it cannot be content-addressed."
    )


def test_plan_for_bed_with_malformed_md5_is_refused():
    plan = plan_for(_record("format:3003", "BED", md5="not-a-checksum"), OPTIONS)

    assert plan.cache_key is None
    assert plan.refusal.startswith("Cannot preprocess this file: the catalog md5 'not-a-checksum'")


def test_plan_for_bed_with_md5_has_the_cache_key_of_its_route_and_options():
    plan = plan_for(_record("format:3003", "bed", md5=MD5.upper()), OutputOptions(compression_level=6))

    expected = cache_key(f"md5:{MD5}", "BED", "intervals", {"compression_level": 6, "index": "auto"})
    assert plan.checksum == f"md5:{MD5}"
    assert plan.cache_key == expected
    assert plan.refusal is None


def test_plan_for_uses_sha256_when_md5_is_missing():
    plan = plan_for(_record(None, "BAM", sha256=SHA256), OutputOptions(compression_level=9, index="csi"))

    assert plan.checksum == f"sha256:{SHA256}"
    assert plan.cache_key == cache_key(f"sha256:{SHA256}", "BAM", "alignments", {"compression_level": 9, "index": "csi"})


def test_plan_for_keys_follow_the_output_options():
    record = _record("format:3003", "BED", md5=MD5)
    keys = {level: plan_for(record, OutputOptions(compression_level=level)).cache_key for level in (4, 5)}

    assert keys[4] != keys[5]
    assert keys[4] == cache_key(f"md5:{MD5}", "BED", "intervals", {"compression_level": 4, "index": "auto"})


def test_the_api_and_the_code_location_derive_the_same_options_from_settings():
    settings = Settings.from_environ({"CFDB_DATA_DIR": "/nonexistent", "CFDB_COMPRESSION_LEVEL": "7"})
    tools = Tools.from_settings(settings)

    assert OutputOptions.from_settings(settings) == OutputOptions.from_settings(tools) == OutputOptions(7)


def test_plan_for_keys_do_not_depend_on_how_the_format_was_named():
    by_id = plan_for(_record("format:3613", None, md5=MD5), OPTIONS)
    by_name = plan_for(_record(None, "narrowpeak", md5=MD5), OPTIONS)

    assert by_id.cache_key == by_name.cache_key is not None
