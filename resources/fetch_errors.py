"""What can go wrong fetching a source: one error type per answer a client gets (``status``) and
whether a retry can help (``permanent``); and how an upstream's HTTP errors are classified."""

from __future__ import annotations

from urllib.parse import urlsplit

__all__ = [
    "DRS_ERRORS",
    "UPSTREAM_ERRORS",
    "ChecksumMismatch",
    "DRSForbidden",
    "DRSNoAccessMethod",
    "FetchError",
    "PermanentFetchError",
    "UpstreamNotFound",
    "UpstreamRangeNotSatisfiable",
    "UpstreamTimeout",
    "redact_url",
]


class FetchError(Exception):
    """The source could not be fetched.

    ``permanent``: a retry will not help (the build fails for good, and the failure is remembered);
    ``status``: what a proxy of the upstream answers the client."""

    permanent = False
    status = 502


class UpstreamTimeout(FetchError):
    status = 504


class PermanentFetchError(FetchError):
    permanent = True


class UpstreamNotFound(PermanentFetchError):
    status = 404


class ChecksumMismatch(PermanentFetchError):
    """The downloaded bytes do not match the catalog checksum."""


class DRSForbidden(PermanentFetchError):
    """A DRS object or access endpoint answered 401/403: answered 403, as the original did."""

    status = 403


class DRSNoAccessMethod(PermanentFetchError):
    """The DRS object has no https access method: answered 501, as the original did."""

    status = 501


class UpstreamRangeNotSatisfiable(PermanentFetchError):
    """The range starts past the end of the upstream file (``size`` when known)."""

    status = 416

    def __init__(self, size: int | None):
        super().__init__("The range starts past the end of the upstream file.")
        self.size = size


# How an upstream's HTTP error answers are classified; anything else is transient (502).
UPSTREAM_ERRORS: dict[int, type[FetchError]] = {
    401: PermanentFetchError,
    403: PermanentFetchError,
    404: UpstreamNotFound,
    410: UpstreamNotFound,
}
# A DRS server's own refusals are the repository's answer about the file (the original's 403).
DRS_ERRORS: dict[int, type[FetchError]] = {**UPSTREAM_ERRORS, 401: DRSForbidden, 403: DRSForbidden}


def redact_url(url: str) -> str:
    """The URL without credentials and query string (signed URLs carry secrets there)."""
    parts = urlsplit(url)
    # The netloc minus any userinfo: keeps IPv6 brackets, and never raises on a malformed port.
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"
