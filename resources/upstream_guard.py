"""The SSRF guard of every upstream read (DRS servers, https sources, the API's proxy, each redirect
hop): the scheme and host against the allowlist before any lookup, then every address the host
resolves to against the refused ranges, and a connection only to those checked addresses."""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError
from urllib3.util import connection as urllib3_connection

from resources.fetch_errors import FetchError, PermanentFetchError, redact_url

__all__ = ["PinnedAdapter", "check_url", "host_allowed", "resolve_checked"]

_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def check_url(url: str, upstream_hosts: list[str], allow_loopback: bool) -> None:
    """The SSRF guard's first half, before any DNS lookup or connection: the scheme, the host
    against ``upstream_hosts``, and an IP-literal host against the refused address ranges."""
    parts = urlsplit(url)
    host = (parts.hostname or "").rstrip(".")
    loopback_name = host in _LOOPBACK or _is_loopback_literal(host)
    http_loopback = parts.scheme == "http" and allow_loopback and parts.hostname in _LOOPBACK
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
        check_address(host, literal, allow_loopback)
    if allow_loopback and loopback_name:
        return  # a loopback test server: allowed by CFDB_ALLOW_HTTP_LOOPBACK, whatever the list
    if not host_allowed(host, upstream_hosts):
        raise PermanentFetchError(
            f"The upstream host {host} ({redact_url(url)}) is not an allowed upstream; to fetch from it, "
            "add it to CFDB_UPSTREAM_HOSTS (host names, .example.org for its subdomains, * for any "
            "public host)."
        )

def check_address(host: str, address: ipaddress.IPv4Address | ipaddress.IPv6Address, allow_loopback: bool) -> None:
    """Refuse an address that is not public (loopback is fine with allow_http_loopback)."""
    if _is_public(address):
        return
    is_ = "is" if host.strip("[]") == str(address) else "resolves to"
    if _is_loopback(address):
        if allow_loopback:
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

def resolve_checked(url: str, allow_loopback: bool) -> tuple[str, ...]:
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
        check_address(host, ipaddress.ip_address(text.partition("%")[0]), allow_loopback)
        if text not in addresses:
            addresses.append(text)
    if not addresses:
        raise FetchError(f"The upstream {redact_url(url)} is unreachable: its host name has no address.")
    return tuple(addresses)


def host_allowed(host: str, patterns: list[str]) -> bool:
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


class PinnedAdapter(HTTPAdapter):
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
