"""The source fetcher: downloads catalog sources (file://, https://) with checksum verification,
and opens them for streaming (passthrough formats).

Downloads are spooled (resources/spool.py): streamed to a file in the work directory, hashed on the
way, readable while they arrive, and verified against the catalog checksum before anything built
from them is published.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote, urljoin, urlsplit

import dagster as dg
import requests
from pydantic import Field

from resources.fetch_errors import (
    DRS_ERRORS,
    UPSTREAM_ERRORS,
    ChecksumMismatch,
    DRSForbidden,
    DRSNoAccessMethod,
    FetchError,
    PermanentFetchError,
    UpstreamNotFound,
    UpstreamRangeNotSatisfiable,
    UpstreamTimeout,
    redact_url,
)
from resources.ranges import ByteRange, RangeNotSatisfiable, read_span
from resources.settings import DEFAULT_UPSTREAM_HOSTS
from resources.spool import Download, LocalSource, Spool
from resources.upstream_guard import PinnedAdapter, check_url, resolve_checked

__all__ = [
    "ChecksumMismatch",
    "DRSForbidden",
    "DRSNoAccessMethod",
    "Download",
    "FetchError",
    "PermanentFetchError",
    "SourceFetcher",
    "Upstream",
    "UpstreamNotFound",
    "UpstreamRangeNotSatisfiable",
    "UpstreamTimeout",
    "redact_url",
]

CHUNK = 1024 * 1024


@dataclass
class Upstream:
    """An opened upstream body: status decided, headers known, bytes not yet read."""

    status: int  # 200 or 206
    size: int | None  # total size, when known
    start: int
    end: int | None  # exclusive; None when unknown
    chunks: Iterator[bytes]
    close: Callable[[], None]


class SourceFetcher(dg.ConfigurableResource):
    """Fetches sources over file://, https://, drs:// (and http:// to loopback, for tests)."""

    connect_timeout_s: float = 30.0
    read_timeout_s: float = 60.0
    retries: int = 3
    backoff_s: float = 1.0
    max_redirects: int = 5
    drs_timeout_s: float = 10.0
    allow_http_loopback: bool = False  # loopback upstreams (http or https; tests): never in production
    allow_file_urls: bool = True  # the embedded profile serves a local demo; production turns it off
    ca_bundle: str | None = None  # a CA file to trust instead of the system's (private upstreams, tests)
    # The hosts https upstreams may be on (CFDB_UPSTREAM_HOSTS): exact names, ".suffix" for any
    # subdomain, "*" for any public host. Private, link-local, multicast and reserved addresses are
    # refused whatever the list says; loopback too, unless allow_http_loopback.
    upstream_hosts: list[str] = Field(default_factory=lambda: list(DEFAULT_UPSTREAM_HOSTS))

    def download(
        self, url: str, dest: Path, checksum: str | None, progress: Callable[[int], None] | None = None
    ) -> Download:
        """Fetch ``url`` to ``dest``, verifying ``checksum`` (``md5:<hex>`` / ``sha256:<hex>``);
        ``progress`` is told the bytes received so far after each chunk. The bytes go to
        ``<dest>.part``, renamed only when complete and verified. Transient failures (5xx, resets,
        timeouts) resume where the bytes stopped, with exponential backoff, up to ``retries`` times."""
        part = dest.with_name(dest.name + ".part")
        try:
            got = self.spool(url, part, checksum, progress, in_place=False).result()
            os.replace(part, dest)
            return Download(dest, got.size, got.md5, got.sha256)
        finally:
            part.unlink(missing_ok=True)

    def spool(
        self, url: str, dest: Path, checksum: str | None, progress: Callable[[int], None] | None = None,
        in_place: bool = True,
    ) -> Spool:
        """Start fetching ``url`` into ``dest`` in a thread, for readers that consume the bytes as
        they arrive (resources/spool.py); ``result()`` verifies ``checksum``. With ``in_place``, a
        file:// source is not copied: its own path is read (``LocalSource``), and ``dest`` is not
        written."""
        url = self.resolve(url)
        if in_place and urlsplit(url).scheme == "file":  # the tools open the file itself
            path = self._file_path(url)
            try:
                path.stat()
            except OSError as exc:
                raise PermanentFetchError(f"The source {redact_url(url)} cannot be read ({exc.strerror}).") from None
            return LocalSource(path, checksum, redact_url(url), progress)
        return Spool(lambda offset: self._chunks(url, offset), dest, checksum, redact_url(url), progress,
                     self.retries, self.backoff_s)

    def resolve(self, url: str) -> str:
        """A ``drs://host/id`` URI → the https URL of its first https access method (GA4GH DRS v1:
        ``https://host/ga4gh/drs/v1/objects/id``, an ``access_id`` resolved through ``/access/``).
        Other URLs are returned as they are."""
        parts = urlsplit(url)
        if parts.scheme != "drs":
            return url
        object_id = parts.path.strip("/")
        if not parts.netloc or not object_id:
            raise PermanentFetchError(f"Invalid DRS URI {redact_url(url)}: expected drs://host/object-id.")
        base = f"https://{parts.netloc}/ga4gh/drs/v1/objects/{quote(object_id, safe='')}"
        # The DRS host is checked like any upstream (by _get, before it connects); so is the
        # access URL it names, here and again on every hop when it is fetched.
        obj = self._json(base, "DRS object")
        for method in obj.get("access_methods") or []:
            if not isinstance(method, dict) or method.get("type") != "https":
                continue
            access = method.get("access_url")
            if isinstance(access, dict):
                access = access.get("url")
            if not access and method.get("access_id"):
                access = self._json(f"{base}/access/{quote(str(method['access_id']), safe='')}", "DRS access URL").get("url")
            if isinstance(access, str) and access:
                check_url(access, self.upstream_hosts, self.allow_http_loopback)
                return access
        raise DRSNoAccessMethod(
            f"The DRS object {redact_url(url)} has no https access method; it cannot be fetched here."
        )

    def _json(self, url: str, what: str) -> dict:
        response = self._get(url, None, timeout=self.drs_timeout_s, errors=DRS_ERRORS)
        try:
            value = response.json()
        except ValueError:
            raise FetchError(f"The {what} at {redact_url(url)} is not JSON.") from None
        finally:
            response.close()
        if not isinstance(value, dict):
            raise FetchError(f"The {what} at {redact_url(url)} is not a JSON object.")
        return value

    def size(self, url: str) -> int | None:
        """The upstream size (stat for file://, HEAD for https), or None when it does not say."""
        url = self.resolve(url)
        if urlsplit(url).scheme == "file":
            try:
                return self._file_path(url).stat().st_size
            except OSError as exc:
                raise PermanentFetchError(f"The source file:// {_file_path(url).name} cannot be read ({exc.strerror}).") from None
        response = self._get(url, None, method="HEAD")
        response.close()
        return _total_size(response)

    def _chunks(self, url: str, offset: int = 0) -> Iterator[bytes]:
        """The body of one attempt from byte ``offset`` on; a failure mid-body is a transient
        FetchError. An https upstream that ignores the Range of a resume is read from its start,
        the bytes before ``offset`` dropped."""
        if urlsplit(url).scheme == "file":
            path = self._file_path(url)
            try:
                fh = open(path, "rb")
            except OSError as exc:
                raise PermanentFetchError(f"The source {redact_url(url)} cannot be read ({exc.strerror}).") from None
            with fh:
                fh.seek(offset)
                while chunk := fh.read(CHUNK):
                    yield chunk
            return
        response = self._get(url, f"bytes={offset}-" if offset else None)
        skip = offset if offset and response.status_code == 200 else 0
        if offset and response.status_code == 206 and not response.headers.get("Content-Range", "").startswith(
                f"bytes {offset}-"):
            response.close()
            raise FetchError(f"The upstream {redact_url(url)} resumed at the wrong offset.")
        try:
            for chunk in response.iter_content(CHUNK):
                if skip:
                    dropped = min(skip, len(chunk))
                    chunk, skip = chunk[dropped:], skip - dropped
                if chunk:
                    yield chunk
        except requests.RequestException as exc:  # connection reset or read timeout mid-body
            raise FetchError(f"Downloading {redact_url(url)} failed mid-body: {type(exc).__name__}.") from None
        finally:
            response.close()

    def _file_path(self, url: str) -> Path:
        if not self.allow_file_urls:
            raise PermanentFetchError(
                f"file:// sources are disabled here ({_file_path(url).name}); set CFDB_ALLOW_FILE_URLS=true "
                "only for trusted, local catalogs."
            )
        return _file_path(url)

    def _get(
        self,
        url: str,
        byte_range: str | None,
        method: str = "GET",
        timeout: float | None = None,
        errors: dict[int, type[FetchError]] = UPSTREAM_ERRORS,
    ):
        """GET with manual, bounded, re-checked redirects; returns a streaming 200/206 response.
        Every hop passes the SSRF guard (scheme, host, resolved addresses) before it connects."""
        headers = {"Accept-Encoding": "identity"}
        if byte_range:
            headers["Range"] = byte_range
        current = url
        for _ in range(self.max_redirects + 1):
            check_url(current, self.upstream_hosts, self.allow_http_loopback)
            addresses = resolve_checked(current, self.allow_http_loopback)
            try:
                with requests.Session() as session:
                    adapter = PinnedAdapter(addresses)
                    session.mount("https://", adapter)
                    session.mount("http://", adapter)
                    response = session.request(
                        method,
                        current,
                        headers=headers,
                        stream=True,
                        allow_redirects=False,
                        timeout=(timeout or self.connect_timeout_s, timeout or self.read_timeout_s),
                        verify=self.ca_bundle or True,
                    )
            except requests.Timeout:
                raise UpstreamTimeout(f"The upstream {redact_url(current)} timed out.") from None
            except requests.RequestException as exc:
                raise FetchError(f"The upstream {redact_url(current)} is unreachable ({type(exc).__name__}).") from None
            if response.status_code in (301, 302, 303, 307, 308):
                location = response.headers.get("Location")
                response.close()
                if not location:
                    raise FetchError(f"The upstream {redact_url(current)} redirected without a Location.")
                current = urljoin(current, location)
                continue
            if response.status_code in (200, 206):
                return response
            response.close()
            if response.status_code == 416 and byte_range:
                raise UpstreamRangeNotSatisfiable(_total_size(response))
            error = errors.get(response.status_code, FetchError)
            raise error(f"The upstream {redact_url(current)} answered HTTP {response.status_code}.")
        raise PermanentFetchError(f"The upstream {redact_url(url)} redirected more than {self.max_redirects} times.")

    def open_range(self, url: str, byte_range: ByteRange | None = None) -> Upstream:
        """Open a source for proxying: the whole file, or one client range as it was asked (suffix
        ranges too). Raises FetchError before any byte is promised: UpstreamRangeNotSatisfiable
        when the range starts past the end, and a plain FetchError when an https upstream ignored
        the range (its 200 must never be passed off as a 206). For https the answer's
        Content-Range gives the span and the total, so no HEAD is needed."""
        url = self.resolve(url)
        if urlsplit(url).scheme == "file":
            return _open_file(self._file_path(url), byte_range)
        header = byte_range.header if byte_range else None
        response = self._get(url, header)
        size = _total_size(response)
        if header and response.status_code != 206:
            # An upstream that ignores Range must never be passed off as a 206.
            response.close()
            raise FetchError(f"The upstream {redact_url(url)} ignored the byte range.")
        start, end = 0, size
        if response.status_code == 206:
            span = response.headers.get("Content-Range", "").removeprefix("bytes ").split("/")[0]
            first, _, last = span.partition("-")
            if not (first.isdigit() and last.isdigit()):
                response.close()
                raise FetchError(f"The upstream {redact_url(url)} sent a 206 without a usable Content-Range.")
            start, end = int(first), int(last) + 1
        return Upstream(
            status=response.status_code,
            size=size,
            start=start,
            end=end,
            chunks=response.iter_content(64 * 1024),
            close=response.close,
        )


def _total_size(response) -> int | None:
    content_range = response.headers.get("Content-Range", "")
    if "/" in content_range and content_range.rsplit("/", 1)[1].isdigit():
        return int(content_range.rsplit("/", 1)[1])
    length = response.headers.get("Content-Length")
    if response.status_code == 200 and length and length.isdigit():
        return int(length)
    return None


def _file_path(url: str) -> Path:
    return Path(unquote(urlsplit(url).path))


def _open_file(path: Path, byte_range: ByteRange | None) -> Upstream:
    try:
        fh = open(path, "rb")
        size = os.fstat(fh.fileno()).st_size
    except OSError as exc:
        raise PermanentFetchError(f"The source file:// {path.name} cannot be read ({exc.strerror}).") from None
    try:
        start, end = byte_range.resolve(size) if byte_range else (0, size)
    except RangeNotSatisfiable:
        fh.close()
        raise UpstreamRangeNotSatisfiable(size) from None
    return Upstream(
        status=206 if byte_range else 200, size=size, start=start, end=end,
        chunks=read_span(fh, start, end, 64 * 1024), close=fh.close,
    )
