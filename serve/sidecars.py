"""Index sidecars a DCC publishes next to its files (4DN ``extra_files``), proxied by /index for
formats we do not process."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

from resources import FileRecord
from serve.errors import HTTPProblem

__all__ = ["Sidecar", "find_sidecar"]

# 4DN publishes index sidecars next to its files (reference §1.4); "bw" is deliberately not one.
SIDECAR_FORMATS = {"bai", "tbi", "csi", "beddb", "pairs_px2", "bg_px2"}
SIDECAR_BASES = {"4dn": "https://data.4dnucleome.org"}


@dataclass(frozen=True)
class Sidecar:
    """An upstream index file published by the DCC itself."""

    url: str
    filename: str
    size: int | None


def find_sidecar(record: FileRecord, allow_http_loopback: bool) -> Sidecar | None:
    """The DCC's own index for this file (4DN ``extra_files``), or None. Unlike the original,
    an entry that is not an index is never served as one (its §11.12)."""
    base = SIDECAR_BASES.get(record.dcc)
    extra = record.extra or {}
    fourdn = extra.get("fourdn") if isinstance(extra.get("fourdn"), dict) else {}
    entries = extra.get("extra_files") or fourdn.get("extra_files") or []
    if base is None or not isinstance(entries, list):
        return None
    entry = next((e for e in entries if isinstance(e, dict) and _sidecar_format(e) in SIDECAR_FORMATS), None)
    if entry is None:
        return None
    href = entry.get("href")
    if not isinstance(href, str) or not href:
        raise HTTPProblem(502, "Upstream sidecar entry is missing required `href` field")
    url = urljoin(base, href)
    parts = urlsplit(url)
    loopback = parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost")
    allowed = (parts.scheme == "https" and parts.hostname == urlsplit(base).hostname) or (
        loopback and allow_http_loopback
    )
    if not allowed:
        raise HTTPProblem(502, "Upstream sidecar URL failed allowlist validation")
    size = entry.get("file_size")
    return Sidecar(url, href.rstrip("/").rsplit("/", 1)[-1], size if isinstance(size, int) else None)


def _sidecar_format(entry: dict) -> str | None:
    fmt = entry.get("file_format")
    name = fmt.get("display_title") if isinstance(fmt, dict) else fmt
    return name.strip().lower() if isinstance(name, str) else None
