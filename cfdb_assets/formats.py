"""Format routing: which family (pipeline) a catalog file belongs to.

Routing uses the EDAM format id first and falls back to the format name,
case-insensitively. Pure: imports neither Dagster nor Starlette.
"""

from __future__ import annotations

from dataclasses import dataclass

ALIGNMENTS = "alignments"
INTERVALS = "intervals"
PASSTHROUGH = "passthrough"  # served as the upstream bytes, never processed
RAW = "raw"  # a format nobody claims: upstream bytes, no index

PROCESSED_FAMILIES = (ALIGNMENTS, INTERVALS)

__all__ = [
    "ALIGNMENTS",
    "INTERVALS",
    "PASSTHROUGH",
    "PROCESSED_FAMILIES",
    "RAW",
    "Route",
    "route_for",
]


@dataclass(frozen=True)
class Route:
    """Where a format goes: its canonical name, family and artifact naming."""

    format: str
    family: str
    data_name: str | None = None  # artifact file name in the store, e.g. "data.bam"
    preset: str | None = None  # tabix preset for the intervals family
    media_type: str = "application/octet-stream"  # for passthrough bytes

    @property
    def processed(self) -> bool:
        return self.family in PROCESSED_FAMILIES


def _alignments(name: str) -> Route:
    return Route(name, ALIGNMENTS, "data.bam")


def _intervals(name: str, ext: str, preset: str) -> Route:
    return Route(name, INTERVALS, f"data.{ext}.gz", preset)


_ROUTES = [
    # (EDAM id, names, route)
    ("format:2572", ("bam",), _alignments("BAM")),
    ("format:2573", ("sam",), _alignments("SAM")),
    ("format:3016", ("vcf",), _intervals("VCF", "vcf", "vcf")),
    ("format:1975", ("gff3", "gff"), _intervals("GFF3", "gff3", "gff")),
    ("format:2306", ("gtf",), _intervals("GTF", "gff3", "gff")),
    ("format:3003", ("bed",), _intervals("BED", "bed", "bed")),
    ("format:3613", ("narrowpeak",), _intervals("narrowPeak", "bed", "bed")),
    ("format:3614", ("broadpeak",), _intervals("broadPeak", "bed", "bed")),
    ("format:3004", ("bigbed",), _intervals("bigBed", "bed", "bed")),  # → BED: Gosling has no bigBed
    ("format:3006", ("bigwig",), Route("bigWig", PASSTHROUGH)),
    ("format:3752", ("csv",), Route("CSV", PASSTHROUGH, media_type="text/csv")),
    ("format:3475", ("tsv",), Route("TSV", PASSTHROUGH, media_type="text/tab-separated-values")),
]
_BY_ID = {edam: route for edam, _, route in _ROUTES}
_BY_NAME = {name: route for _, names, route in _ROUTES for name in names}


def route_for(format_id: str | None, format_name: str | None) -> Route:
    """Route a catalog file by EDAM id, then by name; unclaimed formats get RAW."""
    if format_id and format_id.strip().lower() in _BY_ID:
        return _BY_ID[format_id.strip().lower()]
    if format_name and format_name.strip().lower() in _BY_NAME:
        return _BY_NAME[format_name.strip().lower()]
    return Route((format_name or format_id or "unknown").strip() or "unknown", RAW)
