"""The source fetcher: downloads catalog sources (file://, https://) with checksum verification,
and opens them for streaming (passthrough formats).

Downloads are streamed to ``<dest>.part``, hashed on the way, compared with the catalog checksum,
and renamed only when complete and verified.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote, urljoin, urlsplit

import dagster as dg
import requests
from pydantic import Field
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError
from urllib3.util import connection as urllib3_connection

from resources.ranges import ByteRange, RangeNotSatisfiable, read_span
from resources.settings import DEFAULT_UPSTREAM_HOSTS

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
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


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


@dataclass(frozen=True)
class Download:
    path: Path
    size: int
    md5: str
    sha256: str


@dataclass
class Upstream:
    """An opened upstream body: status decided, headers known, bytes not yet read."""

    status: int  # 200 or 206
    size: int | None  # total size, when known
    start: int
    end: int | None  # exclusive; None when unknown
    chunks: Iterator[bytes]
    close: Callable[[], None]


def redact_url(url: str) -> str:
    """The URL without credentials and query string (signed URLs carry secrets there)."""
    parts = urlsplit(url)
    # The netloc minus any userinfo: keeps IPv6 brackets, and never raises on a malformed port.
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"


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

    def download(self, url: str, dest: Path, checksum: str | None) -> Download:
        """Fetch ``url`` to ``dest``, verifying ``checksum`` (``md5:<hex>`` / ``sha256:<hex>``).

        Transient failures (5xx, resets, timeouts) restart the download from scratch, with
        exponential backoff, up to ``retries`` times."""
        part = dest.with_name(dest.name + ".part")
        url = self.resolve(url)
        try:
            attempt = 0
            while True:
                attempt += 1
                try:
                    got = self._download_once(url, part, dest)
                    break
                except FetchError as exc:
                    if exc.permanent or attempt > self.retries:
                        raise
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
            if checksum:
                algo, _, expected = checksum.partition(":")
                actual = got.md5 if algo == "md5" else got.sha256
                if actual != expected:
                    raise ChecksumMismatch(
                        f"The source bytes do not match the catalog checksum: expected {algo} "
                        f"{expected}, got {actual} ({got.size} bytes from {redact_url(url)}). "
                        "The upstream file changed or the catalog is stale; re-sync the catalog."
                    )
            os.replace(part, dest)
            return got
        finally:
            part.unlink(missing_ok=True)

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
                self._check_url(access)
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

    def _download_once(self, url: str, part: Path, dest: Path) -> Download:
        md5, sha, size = hashlib.md5(), hashlib.sha256(), 0
        with open(part, "wb") as out:
            for chunk in self._chunks(url):
                out.write(chunk)
                md5.update(chunk)
                sha.update(chunk)
                size += len(chunk)
        return Download(dest, size, md5.hexdigest(), sha.hexdigest())

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

    def _chunks(self, url: str) -> Iterator[bytes]:
        """The whole body of one attempt; a failure mid-body is a transient FetchError."""
        if urlsplit(url).scheme == "file":
            path = self._file_path(url)
            try:
                fh = open(path, "rb")
            except OSError as exc:
                raise PermanentFetchError(f"The source {redact_url(url)} cannot be read ({exc.strerror}).") from None
            with fh:
                while chunk := fh.read(CHUNK):
                    yield chunk
            return
        response = self._get(url, None)
        try:
            yield from response.iter_content(CHUNK)
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

    def _check_url(self, url: str) -> None:
        """The SSRF guard's first half, before any DNS lookup or connection: the scheme, the host
        against ``upstream_hosts``, and an IP-literal host against the refused address ranges."""
        parts = urlsplit(url)
        host = (parts.hostname or "").rstrip(".")
        loopback_name = host in _LOOPBACK or _is_loopback_literal(host)
        http_loopback = parts.scheme == "http" and self.allow_http_loopback and parts.hostname in _LOOPBACK
        if parts.scheme != "https" and not http_loopback:
            raise PermanentFetchError(
                f"Unsupported source URL scheme in {redact_url(url)}: expected file://, https:// or drs://."
            )
        try:
            parts.port  # noqa: B018 - raises on a malformed port
        except ValueError:
            raise PermanentFetchError(f"The source URL {redact_url(url)} has an invalid port.") from None
        if not host:
            raise PermanentFetchError(f"The source URL {redact_url(url)} has no host.")
        try:
            literal = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        if literal is not None:
            self._check_address(host, literal)
        if self.allow_http_loopback and loopback_name:
            return  # a loopback test server: allowed by CFDB_ALLOW_HTTP_LOOPBACK, whatever the list
        if not _host_allowed(host, self.upstream_hosts):
            raise PermanentFetchError(
                f"The upstream host {host} ({redact_url(url)}) is not an allowed upstream; to fetch from it, "
                "add it to CFDB_UPSTREAM_HOSTS (host names, .example.org for its subdomains, * for any "
                "public host)."
            )

    def _check_address(self, host: str, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
        """Refuse an address that is not public (loopback is fine with allow_http_loopback)."""
        if _is_public(address):
            return
        is_ = "is" if host.strip("[]") == str(address) else "resolves to"
        if _is_loopback(address):
            if self.allow_http_loopback:
                return
            raise PermanentFetchError(
                f"The upstream host {host} {is_} the loopback address {address}, which is never fetched "
                "unless CFDB_ALLOW_HTTP_LOOPBACK=true (tests only)."
            )
        raise PermanentFetchError(
            f"The upstream host {host} {is_} the private, link-local, multicast or reserved address "
            f"{address}, which is never fetched: no setting allows it (CFDB_UPSTREAM_HOSTS admits public "
            "hosts only); check the catalog's access URL."
        )

    def _addresses(self, url: str) -> tuple[str, ...]:
        """The SSRF guard's second half: resolve the URL's host (getaddrinfo) and check *every*
        address it resolves to. ``_get`` connects only to these checked addresses (see
        ``_PinnedAdapter``), so a DNS answer that changes between the check and the connection
        (DNS rebinding) can never reach a refused address."""
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            infos = socket.getaddrinfo(host, port, urllib3_connection.allowed_gai_family(), socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            raise FetchError(
                f"The upstream {redact_url(url)} is unreachable: its host name cannot be resolved "
                f"({getattr(exc, 'strerror', None) or type(exc).__name__})."
            ) from None
        addresses: list[str] = []
        for *_, sockaddr in infos:
            text = str(sockaddr[0])
            self._check_address(host, ipaddress.ip_address(text.partition("%")[0]))
            if text not in addresses:
                addresses.append(text)
        if not addresses:
            raise FetchError(f"The upstream {redact_url(url)} is unreachable: its host name has no address.")
        return tuple(addresses)

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
            self._check_url(current)
            addresses = self._addresses(current)
            try:
                with requests.Session() as session:
                    adapter = _PinnedAdapter(addresses)
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


def _host_allowed(host: str, patterns: list[str]) -> bool:
    """``host`` is in the allowlist: ``*``, an exact entry, or a subdomain of a ``.suffix`` entry."""
    host = host.lower().rstrip(".")
    for pattern in patterns:
        pattern = pattern.lower().rstrip(".")
        if pattern == "*" or host == pattern or (pattern.startswith(".") and host.endswith(pattern)):
            return True
    return False


def _embedded(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 one carries (mapped ::ffff:a.b.c.d, 6to4, Teredo)."""
    if not isinstance(address, ipaddress.IPv6Address):
        return []
    found = [address.ipv4_mapped, address.sixtofour, *(address.teredo or ())]
    return [a for a in found if a is not None]


def _is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Globally routable unicast: not private, loopback, link-local, shared (CGNAT), multicast,
    reserved or unspecified; nor an IPv6 address that carries such an IPv4 one."""
    if not address.is_global or address.is_multicast or address.is_reserved:
        return False
    return all(_is_public(inner) for inner in _embedded(address))


def _is_loopback(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return address.is_loopback or (isinstance(address, ipaddress.IPv6Address) and bool(address.ipv4_mapped)
                                   and address.ipv4_mapped.is_loopback)


def _is_loopback_literal(host: str) -> bool:
    try:
        return _is_loopback(ipaddress.ip_address(host))
    except ValueError:
        return False


class _PinnedConnection(HTTPConnection):
    """A urllib3 connection to addresses the SSRF guard already checked, instead of resolving the
    host name a second time (TLS still sends SNI for, and verifies the certificate against, the
    URL's host name). With no checked address it connects nowhere."""

    def __init__(self, *args, addresses: tuple[str, ...] = (), **kwargs):
        super().__init__(*args, **kwargs)
        self.addresses = addresses

    def _new_conn(self) -> socket.socket:
        error: OSError | None = None
        for address in self.addresses:  # IP literals: getaddrinfo does no DNS lookup for these
            try:
                return urllib3_connection.create_connection(
                    (address, self.port), self.timeout, source_address=self.source_address,
                    socket_options=self.socket_options,
                )
            except OSError as exc:
                error = exc
        if isinstance(error, TimeoutError):
            raise ConnectTimeoutError(self, f"Connection to {self.host} timed out. (connect timeout={self.timeout})")
        raise NewConnectionError(self, f"Failed to establish a new connection to {self.host}: {error}")


class _PinnedHTTPSConnection(_PinnedConnection, HTTPSConnection):
    pass


class _PinnedAdapter(HTTPAdapter):
    """A requests adapter whose connections go only to ``addresses``, and never through a proxy from
    the environment (a proxy would resolve the host name itself, after our check)."""

    def __init__(self, addresses: tuple[str, ...]):
        super().__init__(max_retries=0)
        self.addresses = addresses

    def send(self, request, **kwargs):
        return super().send(request, **{**kwargs, "proxies": {}})

    def get_connection_with_tls_context(self, request, verify, proxies=None, cert=None):
        pool = super().get_connection_with_tls_context(request, verify, None, cert)
        pool.ConnectionCls = _PinnedHTTPSConnection if pool.scheme == "https" else _PinnedConnection
        pool.conn_kw = {**pool.conn_kw, "addresses": self.addresses}
        return pool


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
