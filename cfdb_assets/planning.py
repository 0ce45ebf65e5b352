"""What the service will do with one catalog file: its route and, if processed, its cache key.

Shared by the HTTP app (to answer hit / miss) and the assets (to check a partition still matches
its catalog record). Pure: no Dagster, no Starlette.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from cfdb_assets.formats import Route, route_for
from cfdb_assets.keys import NotAddressable, cache_key, source_checksum

__all__ = ["OutputOptions", "Plan", "access_refusal", "plan_for", "source_fields"]


class _Record(Protocol):
    format_id: str | None
    format_name: str | None
    md5: str | None
    sha256: str | None
    dcc: str
    local_id: str
    size: int | None
    data_access_level: str | None


class _Settings(Protocol):
    compression_level: int


@dataclass(frozen=True)
class OutputOptions:
    """The output options that change artifact bytes, and so belong in the cache key."""

    compression_level: int
    index: str = "auto"  # BAI/TBI unless a coordinate needs CSI (the only index policy so far)

    @classmethod
    def from_settings(cls, settings: _Settings) -> OutputOptions:
        """The options of a deployment: the API and the code location both build them here."""
        return cls(compression_level=settings.compression_level)

    def as_key_options(self) -> dict[str, object]:
        return {"compression_level": self.compression_level, "index": self.index}


@dataclass(frozen=True)
class Plan:
    """A file's route; for processed formats its checksum and cache key, or why it has none."""

    route: Route
    checksum: str | None = None
    cache_key: str | None = None
    refusal: str | None = None


def plan_for(record: _Record, options: OutputOptions) -> Plan:
    """Route the record and, for a processed family, derive its content-addressed key."""
    route = route_for(record.format_id, record.format_name)
    if not route.processed:
        return Plan(route)
    try:
        checksum = source_checksum(record.md5, record.sha256)
    except NotAddressable as exc:
        return Plan(route, refusal=f"Cannot preprocess this file: {exc}.")
    key = cache_key(checksum, route.format, route.family, options.as_key_options())
    return Plan(route, checksum, key)


def source_fields(record: _Record, plan: Plan) -> dict[str, object]:
    """The ledger's source row for a processed file (``resources.SourceSpec(**...)``): what a
    request and a registration record, so a run can find its file with no request behind it."""
    assert plan.cache_key and plan.checksum, "only a processed, addressable file has a source"
    return {"cache_key": plan.cache_key, "dcc": record.dcc, "local_id": record.local_id,
            "format": plan.route.format, "family": plan.route.family, "checksum": plan.checksum,
            "size": record.size}


def access_refusal(record: _Record) -> str | None:
    """Why this API may not serve the file at all (the original's HuBMAP guard), or None."""
    if record.dcc == "hubmap" and record.data_access_level != "public":
        level = record.data_access_level or "unspecified"
        return f"This file requires {level} access and is not available through this API; use the HuBMAP portal."
    return None
