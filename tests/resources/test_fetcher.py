"""SourceFetcher against real file:// sources and a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import json
import random
import socket
import threading
import time
from collections import Counter, defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import urllib3.util.connection

from resources import ChecksumMismatch, FetchError, SourceFetcher, UpstreamRangeNotSatisfiable
from resources.fetcher import DRSForbidden, DRSNoAccessMethod, redact_url
from resources.settings import DEFAULT_UPSTREAM_HOSTS
from resources.ranges import ByteRange
from tests.helpers import tls_served


def span(start: int, end: int | None) -> ByteRange:
    """The ByteRange of half-open [start, end) (end None: to EOF)."""
    return ByteRange(start, None if end is None else end - 1)


# Larger than the fetcher's 1 MiB download chunk, so a body can break after a chunk was handed over.
PAYLOAD = random.Random(20240501).randbytes(3 * 1024 * 1024)
MD5 = hashlib.md5(PAYLOAD).hexdigest()
SHA256 = hashlib.sha256(PAYLOAD).hexdigest()


# --- the local HTTP server -------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    """Routes: /data (Range-aware), /norange (ignores Range), /redirect/<n> (n hops to /data),
    /offsite (redirects off loopback), /away (redirects to an https host outside the allowlist),
    /private (redirects to a private address), /flaky/<token>/<n> (500 n times, then /data),
    /drop/<token>/<n> (first body cut after n bytes, then /data), /dropnorange/<token>/<n> (the same,
    then /norange), /missing (404). Each request's Range header is kept in ``server.ranges``."""

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def do_GET(self) -> None:
        self._route(head=False)

    def do_HEAD(self) -> None:
        self._route(head=True)

    def _route(self, head: bool) -> None:
        path = urlsplit(self.path).path
        hits = self.server.hit(path)
        self.server.ranges[path].append(self.headers.get("Range"))
        parts = path.strip("/").split("/")
        kind = parts[0]
        if kind == "data":
            self._send_payload(head, honour_range=True)
        elif kind == "norange":
            self._send_payload(head, honour_range=False)
        elif kind == "redirect":
            hops = int(parts[1])
            self._redirect("/data" if hops <= 1 else f"/redirect/{hops - 1}")
        elif kind == "offsite":
            self._redirect("http://example.com/data")
        elif kind == "away":
            self._redirect("https://example.com/data")
        elif kind == "private":
            self._redirect("https://10.0.0.1/data")
        elif kind == "flaky" and hits <= int(parts[2]):
            self._send_status(500)
        elif kind == "flaky":
            self._send_payload(head, honour_range=True)
        elif kind in ("drop", "dropnorange") and hits == 1 and not head:
            self._send_truncated(int(parts[2]))
        elif kind in ("drop", "dropnorange"):
            self._send_payload(head, honour_range=kind == "drop")
        elif kind == "ga4gh":
            self._drs(parts[4:])
        else:
            self._send_status(404)

    def _send_payload(self, head: bool, honour_range: bool) -> None:
        start, end = 0, len(PAYLOAD)
        requested = self.headers.get("Range")
        if requested and honour_range:
            first, _, last = requested.removeprefix("bytes=").partition("-")
            start, end = int(first), min(int(last) + 1 if last else len(PAYLOAD), len(PAYLOAD))
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{len(PAYLOAD)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(end - start))
        self.send_header("Accept-Ranges", "bytes" if honour_range else "none")
        self.end_headers()
        if not head:
            self.wfile.write(PAYLOAD[start:end])

    def _drs(self, parts: list[str]) -> None:
        """GA4GH DRS v1: objects/<id> and objects/<id>/access/<access_id>."""
        base = f"https://127.0.0.1:{self.server.server_address[1]}"
        objects = {
            "direct": {"id": "direct", "access_methods": [
                {"type": "s3", "access_url": {"url": "s3://bucket/key"}},
                {"type": "https", "access_url": {"url": f"{base}/data"}},
            ]},
            "byid": {"id": "byid", "access_methods": [{"type": "https", "access_id": "a1"}]},
            "s3only": {"id": "s3only", "access_methods": [{"type": "s3", "access_url": {"url": "s3://b/k"}}]},
            "offsite": {"id": "offsite", "access_methods": [{"type": "https", "access_url": {"url": "http://example.com/x"}}]},
            "elsewhere": {"id": "elsewhere", "access_methods": [{"type": "https", "access_url": {"url": "https://example.com/x"}}]},
            "metadata": {"id": "metadata", "access_methods": [
                {"type": "https", "access_url": {"url": "https://169.254.169.254/latest/meta-data/"}}]},
            "locked": {"id": "locked", "access_methods": [{"type": "https", "access_id": "a2"}]},
        }
        if len(parts) == 1 and parts[0] in objects:
            self._send_json(objects[parts[0]])
        elif parts == ["byid", "access", "a1"]:
            self._send_json({"url": f"{base}/data"})
        elif parts == ["forbidden"] or parts == ["locked", "access", "a2"]:
            self._send_status(403)
        elif parts == ["unauthorized"]:
            self._send_status(401)
        else:
            self._send_status(404)

    def _send_json(self, value: dict) -> None:
        body = json.dumps(value).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _send_truncated(self, length: int) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(PAYLOAD)))
        self.end_headers()
        self.wfile.write(PAYLOAD[:length])  # then the connection closes early

    def _redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _send_status(self, status: int) -> None:
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.hits: Counter[str] = Counter()
        self.ranges: defaultdict[str, list[str | None]] = defaultdict(list)
        self._lock = threading.Lock()

    def hit(self, path: str) -> int:
        with self._lock:
            self.hits[path] += 1
            return self.hits[path]

    def handle_error(self, request, client_address) -> None:  # clients hanging up early is fine
        pass

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture(scope="module")
def server():
    srv = _Server()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(timeout=5)


@pytest.fixture
def token(request) -> str:
    """A path segment unique to the test, so per-path hit counters start at zero."""
    return request.node.name.replace("[", "-").replace("]", "")


# --- helpers ---------------------------------------------------------------------------------------


def fetcher(**overrides) -> SourceFetcher:
    options = {"allow_http_loopback": True, "backoff_s": 0.01, "connect_timeout_s": 5.0, "read_timeout_s": 5.0}
    return SourceFetcher(**{**options, **overrides})


def source_file(tmp_path: Path, data: bytes = PAYLOAD) -> Path:
    path = tmp_path / "source.bin"
    path.write_bytes(data)
    return path


def read_all(upstream) -> bytes:
    try:
        return b"".join(upstream.chunks)
    finally:
        upstream.close()


def leftovers(dest: Path) -> list[str]:
    return sorted(p.name for p in dest.parent.iterdir() if p.name.startswith(dest.name))


# --- file:// downloads -----------------------------------------------------------------------------


@pytest.mark.parametrize("checksum", [f"md5:{MD5}", f"sha256:{SHA256}"], ids=["md5", "sha256"])
def test_file_download_verifies_checksum_and_reports_both_digests(tmp_path, checksum):
    dest = tmp_path / "out" / "source"
    dest.parent.mkdir()

    got = fetcher().download(source_file(tmp_path).as_uri(), dest, checksum)

    assert (got.path, got.size, got.md5, got.sha256) == (dest, len(PAYLOAD), MD5, SHA256)
    assert dest.read_bytes() == PAYLOAD
    assert leftovers(dest) == ["source"]


@pytest.mark.parametrize("algo", ["md5", "sha256"])
def test_checksum_mismatch_names_both_digests_and_keeps_nothing(tmp_path, algo):
    dest = tmp_path / "out" / "source"
    dest.parent.mkdir()
    wrong = ("0" * 32) if algo == "md5" else ("f" * 64)
    actual = MD5 if algo == "md5" else SHA256

    with pytest.raises(ChecksumMismatch) as caught:
        fetcher().download(source_file(tmp_path).as_uri(), dest, f"{algo}:{wrong}")

    assert wrong in str(caught.value) and actual in str(caught.value)
    assert caught.value.permanent is True
    assert leftovers(dest) == []


def test_missing_file_source_is_a_permanent_fetch_error_and_keeps_nothing(tmp_path):
    dest = tmp_path / "source"

    with pytest.raises(FetchError) as caught:
        fetcher().download((tmp_path / "absent.bin").as_uri(), dest, None)

    assert caught.value.permanent is True
    assert not dest.exists() and not dest.with_name("source.part").exists()


# --- file:// open and size -------------------------------------------------------------------------


@pytest.mark.parametrize("start, end", [(0, 1), (10, 20), (100_000, 2_500_000), (len(PAYLOAD) - 5, len(PAYLOAD))])
def test_file_open_with_range_is_206_with_exact_bytes(tmp_path, start, end):
    upstream = fetcher().open_range(source_file(tmp_path).as_uri(), span(start, end))

    assert (upstream.status, upstream.size, upstream.start, upstream.end) == (206, len(PAYLOAD), start, end)
    assert read_all(upstream) == PAYLOAD[start:end]


def test_file_open_with_end_past_eof_stops_at_eof(tmp_path):
    upstream = fetcher().open_range(source_file(tmp_path).as_uri(), span(len(PAYLOAD) - 3, len(PAYLOAD) + 100))

    assert (upstream.status, upstream.end) == (206, len(PAYLOAD))
    assert read_all(upstream) == PAYLOAD[-3:]


def test_file_open_without_range_is_200_with_whole_body(tmp_path):
    upstream = fetcher().open_range(source_file(tmp_path).as_uri())

    assert (upstream.status, upstream.size) == (200, len(PAYLOAD))
    assert read_all(upstream) == PAYLOAD


def test_file_open_with_suffix_range_is_the_last_bytes(tmp_path):
    upstream = fetcher().open_range(source_file(tmp_path).as_uri(), ByteRange(None, 7))

    assert (upstream.status, upstream.start, upstream.end) == (206, len(PAYLOAD) - 7, len(PAYLOAD))
    assert read_all(upstream) == PAYLOAD[-7:]


def test_file_open_past_the_end_is_416_with_the_size(tmp_path):
    with pytest.raises(UpstreamRangeNotSatisfiable) as caught:
        fetcher().open_range(source_file(tmp_path).as_uri(), ByteRange(len(PAYLOAD), None))

    assert (caught.value.status, caught.value.size) == (416, len(PAYLOAD))


def test_file_size_is_the_file_length_and_missing_file_is_permanent(tmp_path):
    assert fetcher().size(source_file(tmp_path, b"12345").as_uri()) == 5

    with pytest.raises(FetchError) as caught:
        fetcher().size((tmp_path / "absent.bin").as_uri())
    assert caught.value.permanent is True


# --- http downloads --------------------------------------------------------------------------------


def test_http_download_fetches_exact_bytes_and_verifies_sha256(server, tmp_path):
    dest = tmp_path / "source"

    got = fetcher().download(f"{server.base}/data", dest, f"sha256:{SHA256}")

    assert (got.size, got.md5, got.sha256) == (len(PAYLOAD), MD5, SHA256)
    assert dest.read_bytes() == PAYLOAD
    assert leftovers(dest) == ["source"]


def test_http_checksum_mismatch_keeps_nothing(server, tmp_path):
    dest = tmp_path / "source"

    with pytest.raises(ChecksumMismatch) as caught:
        fetcher().download(f"{server.base}/data", dest, f"md5:{'a' * 32}")

    assert "a" * 32 in str(caught.value) and MD5 in str(caught.value)
    assert leftovers(dest) == []


def test_redirect_chain_within_the_limit_is_followed(server, tmp_path):
    dest = tmp_path / "source"

    got = fetcher(max_redirects=3).download(f"{server.base}/redirect/3", dest, f"md5:{MD5}")

    assert got.md5 == MD5 and dest.read_bytes() == PAYLOAD


def test_more_redirects_than_max_redirects_is_a_permanent_error(server, tmp_path):
    dest = tmp_path / "source"

    with pytest.raises(FetchError, match="redirected more than 3 times") as caught:
        fetcher(max_redirects=3).download(f"{server.base}/redirect/4", dest, None)

    assert caught.value.permanent is True
    assert leftovers(dest) == []


def test_redirect_off_loopback_is_refused(server, tmp_path):
    with pytest.raises(FetchError, match=r"example\.com") as caught:
        fetcher().download(f"{server.base}/offsite", tmp_path / "source", None)

    assert caught.value.permanent is True


def test_server_errors_are_retried_with_backoff_until_success(server, tmp_path, token):
    dest = tmp_path / "source"
    path = f"/flaky/{token}/2"
    began = time.monotonic()

    got = fetcher(retries=3).download(f"{server.base}{path}", dest, f"sha256:{SHA256}")

    assert got.sha256 == SHA256 and dest.read_bytes() == PAYLOAD
    assert server.hits[path] == 3
    assert time.monotonic() - began >= 0.01 + 0.02  # two backoffs: 0.01 s, then 0.02 s


def test_server_errors_beyond_the_retries_are_a_transient_error(server, tmp_path, token):
    dest = tmp_path / "source"
    path = f"/flaky/{token}/10"

    with pytest.raises(FetchError, match="HTTP 500") as caught:
        fetcher(retries=2).download(f"{server.base}{path}", dest, None)

    assert caught.value.permanent is False
    assert server.hits[path] == 3  # the first attempt and two retries
    assert leftovers(dest) == []


def test_not_found_is_permanent_and_not_retried(server, tmp_path):
    before = server.hits["/missing"]

    with pytest.raises(FetchError, match="HTTP 404") as caught:
        fetcher(retries=3).download(f"{server.base}/missing", tmp_path / "source", None)

    assert caught.value.permanent is True
    assert server.hits["/missing"] - before == 1


def test_body_cut_short_before_the_first_chunk_is_retried(server, tmp_path, token):
    dest = tmp_path / "source"
    path = f"/drop/{token}/1000"  # less than one download chunk: nothing was handed over yet

    got = fetcher(retries=3).download(f"{server.base}{path}", dest, f"sha256:{SHA256}")

    assert got.size == len(PAYLOAD) and dest.read_bytes() == PAYLOAD
    assert server.hits[path] == 2


def test_body_cut_short_after_bytes_were_written_resumes_where_they_stopped(server, tmp_path, token):
    # The first response breaks after 1.5 MiB (more than one download chunk): the bytes already
    # written stay (a tool may be reading them) and the retry asks for the rest only.
    dest = tmp_path / "source"
    path = f"/drop/{token}/{3 * 512 * 1024}"

    got = fetcher(retries=3).download(f"{server.base}{path}", dest, f"sha256:{SHA256}")

    assert got.size == len(PAYLOAD) and dest.read_bytes() == PAYLOAD
    first, resumed = server.ranges[path]
    assert first is None and resumed in ("bytes=1048576-", "bytes=1572864-"), resumed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["source"]  # no .part left behind


def test_a_resume_the_upstream_answers_whole_drops_the_bytes_already_in(server, tmp_path, token):
    path = f"/dropnorange/{token}/{3 * 512 * 1024}"

    got = fetcher(retries=3).download(f"{server.base}{path}", tmp_path / "source", f"md5:{MD5}")

    assert got.size == len(PAYLOAD) and (tmp_path / "source").read_bytes() == PAYLOAD
    assert server.ranges[path][1].startswith("bytes=")  # asked for the rest, got a 200 of the whole


# --- http open and size ----------------------------------------------------------------------------


def test_http_open_with_range_is_206_with_exact_bytes_and_total_size(server):
    upstream = fetcher().open_range(f"{server.base}/data", span(1000, 5000))

    assert (upstream.status, upstream.size, upstream.start, upstream.end) == (206, len(PAYLOAD), 1000, 5000)
    assert read_all(upstream) == PAYLOAD[1000:5000]


def test_http_open_without_range_is_200_with_whole_body(server):
    upstream = fetcher().open_range(f"{server.base}/norange")

    assert (upstream.status, upstream.size) == (200, len(PAYLOAD))
    assert read_all(upstream) == PAYLOAD


@pytest.mark.parametrize("start, end", [(10, 20), (10, None), (0, 100)])
def test_http_upstream_ignoring_range_is_an_error_never_a_fake_206(server, start, end):
    with pytest.raises(FetchError, match="ignored the byte range"):
        fetcher().open_range(f"{server.base}/norange", span(start, end))


def test_http_size_comes_from_head_after_redirects(server):
    before = server.hits["/data"]

    assert fetcher().size(f"{server.base}/redirect/2") == len(PAYLOAD)
    assert server.hits["/data"] - before == 1


def test_http_is_refused_unless_loopback_http_is_allowed(server, tmp_path):
    before = server.hits["/data"]

    with pytest.raises(FetchError, match="Unsupported source URL scheme") as caught:
        fetcher(allow_http_loopback=False).open_range(f"{server.base}/data")

    assert caught.value.permanent is True
    assert server.hits["/data"] == before  # refused before any request


@pytest.mark.parametrize("url", ["http://example.com/data", "http://10.0.0.1/data", "ftp://127.0.0.1/data"])
def test_non_loopback_http_and_other_schemes_are_refused_even_when_loopback_is_allowed(url):
    with pytest.raises(FetchError, match="Unsupported source URL scheme") as caught:
        fetcher(allow_http_loopback=True).open_range(url)

    assert caught.value.permanent is True


# --- redact_url ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url, redacted",
    [
        ("https://user:secret@example.com/a/b.bam?X-Amz-Signature=abc&t=1", "https://example.com/a/b.bam"),
        ("https://example.com:8443/a.bam?token=xyz#frag", "https://example.com:8443/a.bam"),
        ("http://token@127.0.0.1:9000/f", "http://127.0.0.1:9000/f"),
        ("http://u:p@[::1]:8080/f?sig=1", "http://[::1]:8080/f"),
        ("https://example.com/plain.bam", "https://example.com/plain.bam"),
    ],
)
def test_redact_url_strips_credentials_and_query(url, redacted):
    assert redact_url(url) == redacted


def test_redact_url_survives_a_malformed_port():
    assert redact_url("https://user:pw@example.com:99999/f?sig=1") == "https://example.com:99999/f"


# --- https ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    """The same handler behind real TLS, with a self-signed certificate for 127.0.0.1."""
    srv = _Server()
    with tls_served(srv, tmp_path_factory.mktemp("tls")) as cert:
        yield srv, cert


def test_https_download_verifies_the_certificate_and_the_checksum(tls_server, tmp_path):
    srv, cert = tls_server
    url = f"https://127.0.0.1:{srv.server_address[1]}/data"

    got = fetcher(ca_bundle=str(cert)).download(url, tmp_path / "s", f"sha256:{SHA256}")

    assert got.size == len(PAYLOAD) and (tmp_path / "s").read_bytes() == PAYLOAD


def test_https_with_an_untrusted_certificate_is_refused(tls_server, tmp_path):
    srv, _ = tls_server
    url = f"https://127.0.0.1:{srv.server_address[1]}/data"

    with pytest.raises(FetchError, match="unreachable"):
        fetcher(retries=0).download(url, tmp_path / "s", None)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("object_id", ["direct", "byid"])
def test_drs_uri_resolves_to_its_first_https_access_method_and_downloads(tls_server, tmp_path, object_id):
    srv, cert = tls_server
    drs = f"drs://127.0.0.1:{srv.server_address[1]}/{object_id}"
    tls = fetcher(ca_bundle=str(cert))

    assert tls.resolve(drs) == f"https://127.0.0.1:{srv.server_address[1]}/data"
    got = tls.download(drs, tmp_path / "s", f"md5:{MD5}")
    assert got.size == len(PAYLOAD)


@pytest.mark.parametrize(
    ("object_id", "message", "permanent", "status"),
    [
        ("missing", "HTTP 404", True, 404),
        ("forbidden", "HTTP 403", True, 403),  # the repository's refusal: 403, as the original
        ("unauthorized", "HTTP 401", True, 403),
        ("locked", r"locked/access/a2 answered HTTP 403", True, 403),  # the access endpoint refuses
        ("s3only", "no https access method", True, 501),  # as the original: nothing usable is 501
        ("offsite", "Unsupported source URL scheme", True, 502),
        ("elsewhere", r"example\.com .*CFDB_UPSTREAM_HOSTS", True, 502),  # the access URL is checked too
        ("metadata", r"169\.254\.169\.254 .*never fetched", True, 502),
    ],
)
def test_drs_failures_are_clear_and_classified(tls_server, network, object_id, message, permanent, status):
    srv, cert = tls_server
    drs = f"drs://127.0.0.1:{srv.server_address[1]}/{object_id}"

    with pytest.raises(FetchError, match=message) as caught:
        fetcher(ca_bundle=str(cert)).resolve(drs)
    assert caught.value.permanent is permanent
    assert caught.value.status == status
    assert network.connected == [] and "example.com" not in network.resolved  # only the DRS server


def test_drs_refusals_have_their_own_types():
    assert issubclass(DRSForbidden, FetchError) and DRSForbidden.status == 403
    assert issubclass(DRSNoAccessMethod, FetchError) and DRSNoAccessMethod.status == 501


def test_plain_urls_are_not_resolved():
    assert fetcher().resolve("https://example.org/a.bam") == "https://example.org/a.bam"



# --- the SSRF guard: allowed hosts, refused addresses ------------------------------------------------


class _Network:
    """Spies on name resolution and outgoing connections. ``fake`` answers some names (a list of
    answers: one per lookup, the last one repeated); the rest resolve for real. Connections to
    loopback go through (the local test servers); any other is recorded and refused, so no test
    ever leaves the machine."""

    def __init__(self) -> None:
        self.fake: dict[str, list[list[str]]] = {}
        self.resolved: list[str] = []
        self.connected: list[str] = []

    def getaddrinfo(self, real):
        def lookup(host, port, *args, **kwargs):
            name = host.decode() if isinstance(host, bytes) else str(host)
            self.resolved.append(name)
            answers = self.fake.get(name)
            if answers is None:
                return real(host, port, *args, **kwargs)
            addresses = answers.pop(0) if len(answers) > 1 else answers[0]
            return [(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
                    for a in addresses]
        return lookup

    def create_connection(self, real):
        def connect(address, *args, **kwargs):
            if address[0] in ("127.0.0.1", "::1"):
                return real(address, *args, **kwargs)
            self.connected.append(address[0])
            raise ConnectionRefusedError(f"test: no connection to {address[0]}")
        return connect


@pytest.fixture
def network(monkeypatch) -> _Network:
    spy = _Network()
    monkeypatch.setattr(socket, "getaddrinfo", spy.getaddrinfo(socket.getaddrinfo))
    monkeypatch.setattr(urllib3.util.connection, "create_connection",
                        spy.create_connection(urllib3.util.connection.create_connection))
    return spy


PUBLIC = "93.184.215.14"  # a globally routable address (never actually connected to: see _Network)


@pytest.mark.parametrize("call", ["download", "open_range", "size"])
def test_a_host_outside_the_allowlist_is_refused_before_any_lookup_or_connection(network, tmp_path, call):
    url = "https://example.com/data.bam"
    guarded = fetcher(allow_http_loopback=False)
    run = {"download": lambda: guarded.download(url, tmp_path / "s", None),
           "open_range": lambda: guarded.open_range(url), "size": lambda: guarded.size(url)}[call]

    with pytest.raises(FetchError, match=r"upstream host example\.com .*CFDB_UPSTREAM_HOSTS") as caught:
        run()

    assert caught.value.permanent is True and caught.value.status == 502
    assert network.resolved == [] and network.connected == []
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("host", "hosts", "allowed"),
    [
        ("data.4dnucleome.org", None, True),
        ("www.encodeproject.org", None, True),
        ("encode-public.s3.amazonaws.com", None, True),
        ("assets.hubmapconsortium.org", None, True),
        ("4dn-open-data-public.s3.amazonaws.com", None, True),  # ".s3.amazonaws.com": any bucket
        ("bucket.s3.us-west-2.amazonaws.com", None, True),
        ("s3.amazonaws.com", None, True),
        ("DATA.4DNucleome.org.", None, True),  # case and a trailing dot do not matter
        ("sub.data.4dnucleome.org", None, False),  # exact entries are exact
        ("evil4dnucleome.org", None, False),
        ("data.4dnucleome.org.evil.example", None, False),
        ("xs3.amazonaws.com", None, False),
        ("bucket.s3.eu-west-1.amazonaws.com", None, False),
        ("files.example.org", ["*"], True),  # "*": any public host
        ("a.example.org", [".example.org"], True),
        ("example.org", [".example.org"], False),  # a dotted entry is its subdomains only
        ("data.4dnucleome.org", ["files.example.org"], False),  # the list replaces the default
    ],
)
def test_the_allowlist_admits_exact_hosts_and_dotted_suffixes(network, host, hosts, allowed):
    network.fake[host.lower()] = [[PUBLIC]]
    options = {} if hosts is None else {"upstream_hosts": hosts}

    with pytest.raises(FetchError) as caught:
        fetcher(allow_http_loopback=False, retries=0, **options).open_range(f"https://{host}/f.bam")

    if allowed:  # the guard let it through: the connection went to the checked address
        assert "unreachable" in str(caught.value) and network.connected == [PUBLIC]
    else:
        assert "CFDB_UPSTREAM_HOSTS" in str(caught.value) and network.connected == []


def test_the_default_allowlist_is_the_fetchers_default():
    assert SourceFetcher().upstream_hosts == list(DEFAULT_UPSTREAM_HOSTS)
    assert SourceFetcher().allow_http_loopback is False


def test_a_redirect_to_a_host_outside_the_allowlist_is_refused(server, network):
    before = server.hits["/away"]

    with pytest.raises(FetchError, match=r"upstream host example\.com .*CFDB_UPSTREAM_HOSTS") as caught:
        fetcher().open_range(f"{server.base}/away")

    assert caught.value.permanent is True
    assert server.hits["/away"] - before == 1
    assert "example.com" not in network.resolved and network.connected == []


def test_a_redirect_to_a_private_address_is_refused_even_when_any_host_is_allowed(server, network):
    with pytest.raises(FetchError, match=r"10\.0\.0\.1 is the private, .*never fetched") as caught:
        fetcher(upstream_hosts=["*"]).open_range(f"{server.base}/private")

    assert caught.value.permanent is True
    assert network.connected == []


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1", "127.1.2.3", "[::1]", "[::ffff:127.0.0.1]"],
)
def test_loopback_ip_literals_are_refused_unless_loopback_is_allowed(tls_server, network, host):
    srv, cert = tls_server
    url = f"https://{host}:{srv.server_address[1]}/data"
    before = srv.hits["/data"]

    with pytest.raises(FetchError, match=r"loopback address .*CFDB_ALLOW_HTTP_LOOPBACK=true") as caught:
        fetcher(allow_http_loopback=False, upstream_hosts=["*"], ca_bundle=str(cert)).open_range(url)

    assert caught.value.permanent is True
    assert srv.hits["/data"] == before  # refused before any request
    assert network.resolved == [] and network.connected == []


@pytest.mark.parametrize(
    "host",
    ["10.0.0.1", "172.16.5.4", "192.168.1.1", "169.254.169.254", "100.64.0.1", "0.0.0.0", "224.0.0.1",
     "240.0.0.1", "255.255.255.255", "[fe80::1]", "[fc00::1]", "[ff02::1]", "[::]", "[::ffff:10.0.0.1]",
     "[2002:a00:1::]"],  # the last two carry a private IPv4 address (mapped, 6to4)
)
@pytest.mark.parametrize("loopback", [False, True])
def test_private_link_local_multicast_and_reserved_literals_are_always_refused(network, host, loopback):
    with pytest.raises(FetchError, match=r"private, link-local, multicast or reserved .*never fetched") as caught:
        fetcher(allow_http_loopback=loopback, upstream_hosts=["*"]).open_range(f"https://{host}/data")

    assert caught.value.permanent is True
    assert network.resolved == [] and network.connected == []


def test_a_name_resolving_to_loopback_is_refused_unless_loopback_is_allowed(tls_server, server, network):
    srv, cert = tls_server
    before = srv.hits["/data"]

    with pytest.raises(FetchError, match=r"localhost resolves to the loopback address .*CFDB_ALLOW_HTTP_LOOPBACK"):
        fetcher(allow_http_loopback=False, upstream_hosts=["*"], ca_bundle=str(cert)).open_range(
            f"https://localhost:{srv.server_address[1]}/data"
        )
    assert srv.hits["/data"] == before

    allowed = fetcher(allow_http_loopback=True).open_range(f"http://localhost:{server.server_address[1]}/data")
    assert read_all(allowed) == PAYLOAD


def test_an_allowed_name_resolving_to_a_refused_address_is_refused_before_connecting(tls_server, network):
    srv, cert = tls_server
    network.fake["files.example.org"] = [[PUBLIC, "10.1.2.3"]]  # every address is checked, not the first
    network.fake["local.example.org"] = [["127.0.0.1"]]
    guarded = fetcher(allow_http_loopback=False, upstream_hosts=[".example.org"], ca_bundle=str(cert))
    before = srv.hits["/data"]

    with pytest.raises(FetchError, match=r"files\.example\.org resolves to the private, .* 10\.1\.2\.3"):
        guarded.open_range("https://files.example.org/data")
    with pytest.raises(FetchError, match=r"local\.example\.org resolves to the loopback address 127\.0\.0\.1"):
        guarded.open_range(f"https://local.example.org:{srv.server_address[1]}/data")

    assert network.connected == [] and srv.hits["/data"] == before


def test_the_connection_goes_to_the_checked_address_never_a_second_lookup(network):
    # DNS rebinding: the first answer is public, every later one is loopback. The fetcher resolves
    # once, checks, and connects to the address it checked.
    network.fake["rebind.example.org"] = [[PUBLIC], ["127.0.0.1"]]

    with pytest.raises(FetchError, match="unreachable"):
        fetcher(allow_http_loopback=False, upstream_hosts=["*"], retries=0).open_range("https://rebind.example.org/x")

    assert network.resolved.count("rebind.example.org") == 1
    assert network.connected == [PUBLIC]


def test_an_unresolvable_host_is_a_transient_error(network):
    network.fake["nowhere.example.org"] = [[]]

    with pytest.raises(FetchError, match="unreachable") as caught:
        fetcher(upstream_hosts=["*"], retries=0).open_range("https://nowhere.example.org/x")
    assert caught.value.permanent is False and network.connected == []


def test_a_drs_host_outside_the_allowlist_is_refused_before_any_lookup(network):
    with pytest.raises(FetchError, match=r"upstream host drs\.example\.org .*CFDB_UPSTREAM_HOSTS") as caught:
        fetcher(allow_http_loopback=False).resolve("drs://drs.example.org/abc")

    assert caught.value.permanent is True
    assert network.resolved == [] and network.connected == []


def test_a_drs_server_on_loopback_is_refused_unless_loopback_is_allowed(tls_server, network):
    srv, cert = tls_server
    before = sum(srv.hits.values())

    with pytest.raises(FetchError, match="CFDB_ALLOW_HTTP_LOOPBACK"):
        fetcher(allow_http_loopback=False, upstream_hosts=["*"], ca_bundle=str(cert)).resolve(
            f"drs://127.0.0.1:{srv.server_address[1]}/direct"
        )
    assert sum(srv.hits.values()) == before
