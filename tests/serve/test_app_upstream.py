"""Upstream bytes (passthrough formats, ?raw=true, 4DN index sidecars) through a real HTTP server
on loopback; DRS answers (403, 501) through a real TLS DRS server; the SSRF guard's refusals; and the
answers that refuse work: processing off (503) and the admission ceiling (429)."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from starlette.testclient import TestClient

from resources import Settings, SourceFetcher
from serve.app import create_app
from tests.helpers import tls_served

BODY = bytes(range(256)) * 40  # 10,240 bytes


class _Upstream(BaseHTTPRequestHandler):
    """/file (Range-aware), /norange (ignores Range), /boom (500), /gone (404), /slow (sleeps)."""

    def log_message(self, *args) -> None:
        pass

    def do_HEAD(self) -> None:
        self.do_GET(head=True)

    def do_GET(self, head: bool = False) -> None:
        path = self.path.split("?")[0]
        if path == "/boom":
            return self._status(500)
        if path == "/gone":
            return self._status(404)
        if path == "/slow":
            time.sleep(3)
        start, end, status = 0, len(BODY), 200
        requested = self.headers.get("Range")
        if requested and path != "/norange":
            first, _, last = requested.removeprefix("bytes=").partition("-")
            if not first:  # a suffix range, as S3 and nginx serve it
                first, last = str(max(0, len(BODY) - int(last))), ""
            start, end, status = int(first), min(int(last) + 1 if last else len(BODY), len(BODY)), 206
            if start >= len(BODY):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(BODY)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
        self.send_response(status)
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{len(BODY)}")
        self.send_header("Content-Length", str(end - start))
        self.end_headers()
        if not head:
            self.wfile.write(BODY[start:end])

    def _status(self, status: int) -> None:
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture(scope="module")
def upstream():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _doc(dcc: str, local_id: str, url: str, fmt: tuple[str, str], **extra) -> dict:
    return {"submission": dcc, "local_id": local_id, "md5": "a" * 32, "access_url": url,
            "filename": f"{local_id}.dat", "file_format": {"id": fmt[0], "name": fmt[1]},
            "data_access_level": "public", **extra}


CSV = ("format:3752", "CSV")
BED = ("format:3003", "BED")


@pytest.fixture
def app_for(tmp_path, upstream):
    """Build the app over a catalog of loopback-served files; settings overrides as keywords."""

    def make(fetcher=None, **env):
        bai = {"href": f"{upstream}/file", "file_size": len(BODY), "file_format": {"display_title": "bai"}}
        bigwig = {"href": f"{upstream}/gone", "file_format": "bw"}
        docs = [
            _doc("encode", "CSVOK", f"{upstream}/file", CSV),
            _doc("encode", "CSVBOOM", f"{upstream}/boom", CSV),
            _doc("encode", "CSVGONE", f"{upstream}/gone", CSV),
            _doc("encode", "CSVNORANGE", f"{upstream}/norange", CSV),
            _doc("encode", "CSVSLOW", f"{upstream}/slow", CSV),
            _doc("encode", "BEDA", f"{upstream}/file", BED),
            _doc("encode", "BEDB", f"{upstream}/file", BED, md5="b" * 32),
            _doc("4dn", "4DNSIDECAR", f"{upstream}/file", ("format:3006", "bigWig"), extra={"extra_files": [bigwig, bai]}),
            _doc("4dn", "4DNNOINDEX", f"{upstream}/file", ("format:3006", "bigWig"), extra={"extra_files": [bigwig]}),
            _doc("4dn", "4DNNOHREF", f"{upstream}/file", CSV, extra={"fourdn": {"extra_files": [{"file_format": "tbi"}]}}),
            _doc("4dn", "4DNOFFSITE", f"{upstream}/file", CSV,
                 extra={"extra_files": [{"href": "http://evil.example/x.bai", "file_format": "bai"}]}),
            _doc("4dn", "4DNBED", f"{upstream}/file", BED, extra={"extra_files": [bai]}),
        ]
        catalog = tmp_path / "catalog.jsonl"
        catalog.write_text("".join(json.dumps(d) + "\n" for d in docs))
        settings = Settings.from_environ({
            "CFDB_DATA_DIR": str(tmp_path / "data"), "CFDB_CATALOG": str(catalog),
            "CFDB_ALLOW_HTTP_LOOPBACK": "true", **env,
        })
        return TestClient(create_app(settings, fetcher=fetcher), raise_server_exceptions=False)

    return make


def test_passthrough_proxies_whole_files_and_ranges(app_for):
    with app_for() as client:
        whole = client.get("/data/encode/CSVOK")
        part = client.get("/data/encode/CSVOK", headers={"Range": "bytes=100-"})
        head = client.head("/data/encode/CSVOK")
    assert whole.status_code == 200 and whole.content == BODY
    assert whole.headers["content-length"] == str(len(BODY))
    assert part.status_code == 206 and part.content == BODY[100:]
    assert part.headers["content-range"] == f"bytes 100-{len(BODY) - 1}/{len(BODY)}"
    assert head.status_code == 200 and head.headers["content-length"] == str(len(BODY))


@pytest.mark.parametrize(
    ("local_id", "status", "phrase"),
    [("CSVBOOM", 502, "HTTP 500"), ("CSVGONE", 404, "HTTP 404"), ("CSVNORANGE", 502, "ignored the byte range")],
)
def test_upstream_failures_are_answered_before_any_byte_with_a_sentence(app_for, local_id, status, phrase):
    with app_for() as client:
        response = client.get(f"/data/encode/{local_id}", headers={"Range": "bytes=5-10", "Origin": "https://x"})
    assert response.status_code == status
    assert phrase in response.json()["detail"]
    assert response.headers["access-control-allow-origin"] == "*"


def test_a_4dn_sidecar_that_is_an_index_is_served_and_other_entries_never_are(app_for):
    with app_for() as client:
        served = client.get("/index/4dn/4DNSIDECAR")
        raw = client.get("/index/4dn/4DNSIDECAR?raw=true", headers={"Range": "bytes=0-9"})
        status = client.get("/index/4dn/4DNSIDECAR/status")
        none = client.get("/index/4dn/4DNNOINDEX")
    assert served.status_code == 200 and served.content == BODY
    assert served.headers["content-disposition"].startswith('attachment; filename="file"')
    assert raw.status_code == 206 and raw.content == BODY[:10]
    assert status.json() == {"ready": True}
    assert none.status_code == 404  # a bigWig entry is not an index (the original served it)


@pytest.mark.parametrize(
    ("local_id", "detail"),
    [("4DNNOHREF", "missing required `href` field"), ("4DNOFFSITE", "failed allowlist validation")],
)
def test_a_malformed_sidecar_is_502(app_for, local_id, detail):
    with app_for() as client:
        response = client.get(f"/index/4dn/{local_id}")
    assert response.status_code == 502 and detail in response.json()["detail"]


def test_a_processed_files_index_is_ours_even_when_4dn_publishes_a_sidecar(app_for):
    with app_for() as client:
        response = client.get("/index/4dn/4DNBED")
    assert response.status_code == 202  # built with, and bound to, the data /data serves


def test_processing_off_answers_503_for_misses_but_still_serves_passthrough(app_for):
    with app_for(CFDB_PROCESSING="false") as client:
        miss = client.get("/data/encode/BEDA")
        index_miss = client.get("/index/encode/BEDA")
        csv = client.get("/data/encode/CSVOK")
        csv_index = client.get("/index/encode/CSVOK")
    assert miss.status_code == 503 and miss.headers["retry-after"] == "30"
    assert "?raw=true" in miss.json()["detail"]
    assert index_miss.status_code == 503
    assert csv.status_code == 200
    assert csv_index.status_code == 404  # not 503: CSV never has an index (the original's §11.8)


def test_admission_ceiling_refuses_only_new_work_with_429(app_for):
    with app_for(CFDB_MAX_ACTIVE_JOBS="1") as client:
        first = client.get("/data/encode/BEDA")
        second = client.get("/data/encode/BEDB")
        again = client.get("/index/encode/BEDA")
    assert first.status_code == 202
    assert second.status_code == 429 and second.headers["retry-after"] == "120"
    assert again.status_code == 202 and again.json()["job_id"] == first.json()["job_id"]


def test_upstream_timeouts_are_504(app_for):
    # A 1 s read timeout against an upstream that takes 3 s.
    fetcher = SourceFetcher(allow_http_loopback=True, read_timeout_s=1.0, retries=0)
    with app_for(fetcher=fetcher) as client:
        response = client.get("/data/encode/CSVSLOW")
    assert response.status_code == 504 and "timed out" in response.json()["detail"]


def test_upstream_ranges_need_no_head_suffix_and_past_eof_included(app_for):
    with app_for() as client:
        suffix = client.get("/data/encode/CSVOK", headers={"Range": "bytes=-10"})
        past = client.get("/data/encode/CSVOK", headers={"Range": f"bytes={len(BODY) + 5}-"})
        multi = client.get("/data/encode/CSVOK", headers={"Range": "bytes=0-1,5-6"})
    assert suffix.status_code == 206 and suffix.content == BODY[-10:]
    assert suffix.headers["content-range"] == f"bytes {len(BODY) - 10}-{len(BODY) - 1}/{len(BODY)}"
    assert past.status_code == 416 and past.headers["content-range"] == f"bytes */{len(BODY)}"
    assert multi.status_code == 200 and multi.content == BODY


def test_any_catalog_filename_makes_a_valid_content_disposition(tmp_path, upstream):
    doc = _doc("encode", "UNI", f"{upstream}/file", CSV)
    doc["filename"] = 'résumé→ü "x"\r\nSet-Cookie: a.csv'
    catalog = tmp_path / "catalog.jsonl"
    catalog.write_text(json.dumps(doc) + "\n")
    settings = Settings.from_environ({"CFDB_DATA_DIR": str(tmp_path / "d"), "CFDB_CATALOG": str(catalog),
                                      "CFDB_ALLOW_HTTP_LOOPBACK": "true"})
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        response = client.get("/data/encode/UNI")
    assert response.status_code == 200 and response.content == BODY
    disposition = response.headers["content-disposition"]
    assert "\n" not in disposition and "set-cookie" not in {k.lower() for k in response.headers}
    assert "filename*=UTF-8''r%C3%A9sum%C3%A9" in disposition



# --- DRS answers and the SSRF guard through the app ------------------------------------------------


class _DRS(_Upstream):
    """_Upstream's routes, plus GA4GH DRS v1 objects under /ga4gh/drs/v1/objects/<id>."""

    def do_GET(self, head: bool = False) -> None:
        path = self.path.split("?")[0]
        if not path.startswith("/ga4gh/drs/v1/objects/"):
            return super().do_GET(head)
        object_id = path.removeprefix("/ga4gh/drs/v1/objects/")
        base = f"https://127.0.0.1:{self.server.server_address[1]}"
        objects = {
            "ok": [{"type": "https", "access_url": {"url": f"{base}/file"}}],
            "s3only": [{"type": "s3", "access_url": {"url": "s3://bucket/key"}}],
            "globus": [{"type": "globus", "access_url": {"url": "https://app.globus.org/file-manager?x=1"}}],
            "elsewhere": [{"type": "https", "access_url": {"url": "https://example.com/x.csv"}}],
            "locked": [{"type": "https", "access_id": "a1"}],
        }
        if object_id in ("forbidden", "locked/access/a1"):
            return self._status(403)
        if object_id == "unauthorized":
            return self._status(401)
        if object_id not in objects:
            return self._status(404)
        body = json.dumps({"id": object_id, "access_methods": objects[object_id]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)


@pytest.fixture(scope="module")
def drs_server(tmp_path_factory):
    """A DRS server (and /file) behind real TLS on 127.0.0.1: drs:// always resolves over https."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _DRS)
    server.daemon_threads = True
    with tls_served(server, tmp_path_factory.mktemp("tls")) as cert:
        yield f"127.0.0.1:{server.server_address[1]}", str(cert)


@pytest.fixture
def resolved(monkeypatch) -> list[str]:
    """The host names the process resolves while a test runs (the guard refuses before any)."""
    import socket

    names: list[str] = []
    real = socket.getaddrinfo

    def spy(host, *args, **kwargs):
        names.append(host.decode() if isinstance(host, bytes) else str(host))
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", spy)
    return names


@pytest.fixture
def drs_app(tmp_path, drs_server):
    """The app over a catalog of drs:// files on the local DRS server, with a fetcher that trusts
    its certificate; settings overrides as keywords."""
    host, cert = drs_server

    def make(**env):
        docs = [
            _doc("4dn", "DRSOK", f"drs://{host}/ok", CSV),
            _doc("4dn", "DRSFORBIDDEN", f"drs://{host}/forbidden", CSV),
            _doc("4dn", "DRSBEDFORBIDDEN", f"drs://{host}/forbidden", BED),
            _doc("4dn", "DRSLOCKED", f"drs://{host}/locked", CSV),
            _doc("4dn", "DRSS3ONLY", f"drs://{host}/s3only", CSV),
            _doc("4dn", "DRSELSEWHERE", f"drs://{host}/elsewhere", CSV),
            _doc("hubmap", "HBMUNAUTH", f"drs://{host}/unauthorized", CSV),
            _doc("hubmap", "HBMGLOBUS", f"drs://{host}/globus", CSV),
            _doc("4dn", "DRSOFFLIST", "drs://drs.example.org/abc", CSV),
            _doc("encode", "OFFLIST", "https://example.com/x.csv", CSV),
        ]
        catalog = tmp_path / "catalog.jsonl"
        catalog.write_text("".join(json.dumps(d) + "\n" for d in docs))
        settings = Settings.from_environ({
            "CFDB_DATA_DIR": str(tmp_path / "data"), "CFDB_CATALOG": str(catalog),
            "CFDB_ALLOW_HTTP_LOOPBACK": "true", **env,
        })
        fetcher = SourceFetcher(allow_http_loopback=True, ca_bundle=cert, retries=0,
                                upstream_hosts=list(settings.upstream_hosts))
        return TestClient(create_app(settings, fetcher=fetcher), raise_server_exceptions=False)

    return make


def test_a_drs_file_is_resolved_and_proxied(drs_app):
    with drs_app() as client:
        part = client.get("/data/4dn/DRSOK", headers={"Range": "bytes=10-19"})
        head = client.head("/data/4dn/DRSOK")
    assert part.status_code == 206 and part.content == BODY[10:20]
    assert head.status_code == 200 and head.headers["content-length"] == str(len(BODY))


@pytest.mark.parametrize(
    ("path", "phrase"),
    [
        ("/data/4dn/DRSFORBIDDEN", "HTTP 403"),
        ("/data/4dn/DRSBEDFORBIDDEN?raw=true", "HTTP 403"),
        ("/data/4dn/DRSLOCKED", "access/a1 answered HTTP 403"),  # the access endpoint refuses
        ("/data/hubmap/HBMUNAUTH", "HTTP 401"),
    ],
)
@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_a_drs_server_refusing_the_object_is_403_as_the_original(drs_app, path, phrase, method):
    with drs_app() as client:
        response = client.request(method, path, headers={"Origin": "https://x"})
    assert response.status_code == 403  # the original's "Access denied by upstream repository"
    assert response.headers["access-control-allow-origin"] == "*"
    if method == "GET":
        assert phrase in response.json()["detail"]


@pytest.mark.parametrize("path", ["/data/4dn/DRSS3ONLY", "/data/hubmap/HBMGLOBUS"])
@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_a_drs_object_without_an_https_access_method_is_501_as_the_original(drs_app, path, method):
    with drs_app() as client:
        response = client.request(method, path, headers={"Range": "bytes=0-9"})
    assert response.status_code == 501  # the original's "No supported access method available"
    if method == "GET":
        assert "no https access method" in response.json()["detail"]


@pytest.mark.parametrize(
    ("path", "phrase", "host"),
    [
        ("/data/encode/OFFLIST", "upstream host example.com", "example.com"),
        ("/data/4dn/DRSOFFLIST", "upstream host drs.example.org", "drs.example.org"),  # the DRS host
        ("/data/4dn/DRSELSEWHERE", "upstream host example.com", "example.com"),  # its access URL
    ],
)
def test_a_host_outside_the_allowlist_is_refused_with_a_sentence_before_any_lookup(drs_app, resolved, path, phrase, host):
    with drs_app() as client:
        response = client.get(path)
    assert response.status_code == 502
    assert phrase in response.json()["detail"] and "CFDB_UPSTREAM_HOSTS" in response.json()["detail"]
    assert host not in resolved


def test_the_allowlist_comes_from_cfdb_upstream_hosts_but_private_addresses_stay_refused(tmp_path, resolved):
    doc = _doc("encode", "META", "https://169.254.169.254/latest/meta-data/", CSV)
    offlist = _doc("encode", "ELSEWHERE", "https://example.com/x.csv", CSV)
    catalog = tmp_path / "catalog.jsonl"
    catalog.write_text(json.dumps(doc) + "\n" + json.dumps(offlist) + "\n")
    base = {"CFDB_DATA_DIR": str(tmp_path / "d"), "CFDB_CATALOG": str(catalog)}

    with TestClient(create_app(Settings.from_environ({**base, "CFDB_UPSTREAM_HOSTS": "*"})),
                    raise_server_exceptions=False) as client:
        metadata = client.get("/data/encode/META")
    with TestClient(create_app(Settings.from_environ({**base, "CFDB_UPSTREAM_HOSTS": "files.example.org"})),
                    raise_server_exceptions=False) as client:
        elsewhere = client.get("/data/encode/ELSEWHERE")

    assert metadata.status_code == 502 and "169.254.169.254" in metadata.json()["detail"]
    assert "never fetched" in metadata.json()["detail"]
    assert elsewhere.status_code == 502 and "CFDB_UPSTREAM_HOSTS" in elsewhere.json()["detail"]
    assert "example.com" not in resolved
