"""Content-addressed cache keys (DESIGN.md §4). Pure: no Dagster, no Starlette."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping

__all__ = ["RECIPE_VERSIONS", "NotAddressable", "cache_key", "is_cache_key", "source_checksum"]

# Bump a family's recipe when its output bytes change: every key of that family changes with it,
# so old artifacts are simply never asked for again (nothing needs purging).
RECIPE_VERSIONS: Mapping[str, int] = {"alignments": 1, "intervals": 1}

_MD5 = re.compile(r"^[0-9a-f]{32}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_KEY = re.compile(r"^[0-9a-f]{32}$")


class NotAddressable(ValueError):
    """A catalog record cannot be content-addressed (missing or malformed checksum)."""


def source_checksum(md5: str | None, sha256: str | None) -> str:
    """The source identity used in keys: ``md5:<hex>``, else ``sha256:<hex>``.

    A malformed md5 falls back to a well-formed sha256 (either one can verify the bytes)."""
    md5 = (md5 or "").strip().lower()
    sha256 = (sha256 or "").strip().lower()
    if _MD5.fullmatch(md5):
        return f"md5:{md5}"
    if _SHA256.fullmatch(sha256):
        return f"sha256:{sha256}"
    if md5:
        raise NotAddressable(f"the catalog md5 {md5[:40]!r} is not 32 hex characters")
    if sha256:
        raise NotAddressable(f"the catalog sha256 {sha256[:70]!r} is not 64 hex characters")
    raise NotAddressable("the catalog record has no md5 or sha256, so it cannot be content-addressed")


def cache_key(checksum: str, format_name: str, family: str, options: Mapping[str, object]) -> str:
    """32 hex chars of sha256 over the canonical JSON of everything that shapes the output bytes."""
    if family not in RECIPE_VERSIONS:
        raise ValueError(f"family {family!r} has no recipe; known: {sorted(RECIPE_VERSIONS)}")
    payload = {
        "checksum": checksum,
        "family": family,
        "format": format_name,
        "options": dict(sorted(options.items())),
        "recipe": RECIPE_VERSIONS[family],
    }
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def is_cache_key(value: str) -> bool:
    """True for a well-formed cache key (what the store and /artifacts accept)."""
    return bool(_KEY.fullmatch(value))  # match() with $ would accept a trailing newline
