"""The viewer in a real browser (Debian's chromium, headless, through tests/cdp.py) on the real
service (`scripts/run.sh`: daemon, runs, API) and the demo catalog: a view of a cold file requests
its build, follows the job and shows Gosling reading the content-addressed artifacts with range
requests, cross-origin (the page sets ``window.CFDB_API`` to the server's other name, so every API
and artifact request goes through CORS, as from a portal embedding Gosling). No console error is
allowed. The screenshots go to docs/images/ (README, "Viewer").

A missing chromium fails these tests with BrowserError's sentence; it is never a skip."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from synthetic.demo import document, write_demo
from tests.cdp import Browser
from tests.e2e.service import ROOT, Service

IMAGES = ROOT / "docs" / "images"
# Pixels of a clearly saturated colour in Gosling's canvas: the marks of the spec (strand reds and
# blues, variant types); axes, labels and the coverage bars are greys.
COLOURED = """(() => {
  const { canvas } = window.cfdbViewer.gosling.getCanvas({ resolution: 1 });
  const { data } = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height);
  let coloured = 0;
  for (let i = 0; i < data.length; i += 4) {
    if (Math.max(data[i], data[i + 1], data[i + 2]) - Math.min(data[i], data[i + 1], data[i + 2]) > 60) coloured++;
  }
  return coloured;
})()"""


def _bigwig(path: Path) -> Path:
    """A bigWig signal over chr1 (a passthrough format: served as its upstream bytes)."""
    import pyBigWig

    writer = pyBigWig.open(str(path), "w")
    writer.addHeader([("chr1", 1_000_000), ("chr2", 500_000)])
    starts = list(range(0, 990_000, 2_000))
    writer.addEntries(["chr1"] * len(starts), starts, ends=[s + 1_500 for s in starts],
                      values=[float(1 + (s // 2_000) % 50) for s in starts])
    writer.close()
    return path


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    """The real service on a demo catalog of its own (every file starts cold), plus a bigWig."""
    root = tmp_path_factory.mktemp("viewer")
    catalog = write_demo(root / "catalog")
    signal = _bigwig(root / "catalog" / "sources" / "HBM000BW.bw")
    with catalog.open("a") as out:
        out.write(json.dumps(document("hubmap", "HBM000BW", signal, ("format:3006", "bigWig"))) + "\n")
    svc = Service(root, {"CFDB_CATALOG": str(catalog)})
    svc.start()
    yield svc
    svc.stop()


@pytest.fixture(scope="module")
def browser(service):
    """One headless chromium for the module; its pages call the API at http://localhost:<port>
    while they are served from http://127.0.0.1:<port>, a different origin."""
    with Browser(width=1440, height=900, timeout_s=60) as chromium:
        chromium.follow_workers()
        chromium.send("Page.addScriptToEvaluateOnNewDocument",
                      source=f"window.CFDB_API = 'http://localhost:{service.api_port}';")
        yield chromium


def _open(browser: Browser, service: Service, path: str) -> int:
    """Navigate; returns the index of the first event of this page."""
    mark = len(browser.events)
    browser.goto(f"{service.url}{path}", settle_s=0.5)
    return mark


def _view(browser: Browser, service: Service, dcc: str, local_id: str, tracks: set[str]) -> tuple[dict, list[dict]]:
    """Open a cold file's view and wait until Gosling has data for ``tracks``; returns the file's
    /files answer and the responses the page and its workers received."""
    mark = _open(browser, service, f"/view/{dcc}/{local_id}")
    phases = set()

    def drawn():
        phases.add(browser.evaluate("document.body.dataset.phase"))
        assert not phases & {"failed", "unsupported"}, browser.evaluate("document.getElementById('message').textContent")
        errors = _console_errors(browser, mark)  # a reader's failure shows here first: fail with it
        assert errors == [], errors
        rows = browser.evaluate("window.cfdbViewer.rows")
        return all(rows.get(track, 0) > 0 for track in tracks)

    browser.wait_for(drawn, f"Gosling's data for {local_id}", timeout_s=90)
    browser.pump(1.0)  # the last tiles' requests and draws
    assert "building" in phases, phases  # it was cold: the page followed its job
    assert browser.evaluate("document.querySelector('#build').hidden")
    with service.client() as client:
        info = client.get(f"/files/{dcc}/{local_id}").json()
    assert info["state"] == "ready"
    errors = _console_errors(browser, mark)
    assert errors == [], errors
    return info, [e["params"]["response"] for e in browser.events[mark:] if e.get("method") == "Network.responseReceived"]


def _console_errors(browser: Browser, mark: int) -> list[str]:
    events = browser.events[mark:]
    errors = [" ".join(str(a.get("value", a.get("description", ""))) for a in e["params"].get("args", []))
              for e in events if e.get("method") == "Runtime.consoleAPICalled" and e["params"].get("type") == "error"]
    errors += [e["params"]["exceptionDetails"].get("exception", {}).get("description")
               or e["params"]["exceptionDetails"].get("text", "") for e in events if e.get("method") == "Runtime.exceptionThrown"]
    errors += [f"{e['params'].get('errorText')} {e['params'].get('corsErrorStatus', '')}" for e in events
               if e.get("method") == "Network.loadingFailed" and not e["params"].get("canceled")]
    return errors


def _assert_ranged_reads(service: Service, info: dict, responses: list[dict]) -> None:
    """Gosling read the content-addressed artifacts cross-origin: the data only with 206 ranges
    (Content-Range), the index whole or by ranges; nothing else under /artifacts."""
    api = f"http://localhost:{service.api_port}"
    assert info["data_url"].startswith("/artifacts/") and info["index_url"].startswith("/artifacts/")
    artifacts = [r for r in responses if urlsplit(r["url"]).path.startswith("/artifacts/")]
    data = [r for r in artifacts if r["url"] == api + info["data_url"]]
    index = [r for r in artifacts if r["url"] == api + info["index_url"]]
    assert len(data) + len(index) == len(artifacts), [r["url"] for r in artifacts]
    assert data and index, [r["url"] for r in artifacts]
    for response in data:
        headers = {k.lower(): v for k, v in response["headers"].items()}
        assert response["status"] == 206, response["url"]
        assert headers["content-range"].startswith("bytes ") and headers["access-control-allow-origin"] == "*"
    assert {r["status"] for r in index} <= {200, 206}


def _assert_headers_readable_cross_origin(browser: Browser, path: str) -> None:
    """What the page's script can read of a ranged artifact answer from the other origin. Gosling
    1.0.7's fetchers need none of these headers (they read the body of a 206, and only cache the size
    Content-Range gives), but a reader that asks a file's size (generic-filehandle's stat(), which
    the pinned @gmod readers use) or revalidates it needs CORS to expose them."""
    seen = browser.evaluate(f"""fetch(new URL({path!r}, window.CFDB_API), {{headers: {{Range: 'bytes=0-9'}}}})
        .then(r => ({{status: r.status, range: r.headers.get('content-range'), etag: r.headers.get('etag'),
                     ranges: r.headers.get('accept-ranges'), length: r.headers.get('content-length')}}))""")
    assert seen["status"] == 206 and seen["length"] == "10", seen
    assert seen["range"] and seen["range"].startswith("bytes 0-9/"), seen
    assert seen["etag"] and seen["ranges"] == "bytes", seen


def _assert_drawn(browser: Browser, at_least: int) -> None:
    coloured = browser.evaluate(COLOURED)
    assert coloured >= at_least, f"Gosling's canvas has {coloured} coloured pixels"


def test_view_of_a_cold_sam_builds_it_then_shows_a_pileup_read_by_ranges(browser, service):
    info, responses = _view(browser, service, "encode", "ENCFF000SAM", {"coverage", "reads"})
    assert info["data_url"].endswith("/data.bam") and info["index_type"] == "bai"
    _assert_ranged_reads(service, info, responses)
    _assert_headers_readable_cross_origin(browser, info["data_url"])
    _assert_drawn(browser, 1000)
    region = browser.evaluate("window.cfdbViewer.spec.xDomain")
    assert region["chromosome"] == "chr1" and region["interval"][1] - region["interval"][0] <= 10_000
    browser.screenshot(IMAGES / "viewer-bam.png")


def test_view_of_a_cold_vcf_shows_a_lollipop_track_read_by_ranges(browser, service):
    info, responses = _view(browser, service, "4dn", "4DNFIVCF0001", {"variants"})
    assert info["data_url"].endswith("/data.vcf.gz") and info["index_type"] == "tbi"
    _assert_ranged_reads(service, info, responses)
    _assert_drawn(browser, 500)
    # The demo's contigs are not hg38's: the assembly is the file's own.
    assert browser.evaluate("window.cfdbViewer.spec.assembly")[0] == ["chr1", 1_000_000]
    browser.screenshot(IMAGES / "viewer-vcf.png")


def test_view_of_a_cold_bed_shows_an_interval_track_read_by_ranges(browser, service):
    info, responses = _view(browser, service, "encode", "ENCFF000BED", {"intervals"})
    assert info["data_url"].endswith("/data.bed.gz")
    _assert_ranged_reads(service, info, responses)
    _assert_drawn(browser, 1000)
    browser.screenshot(IMAGES / "viewer-bed.png")


def test_view_of_a_bigwig_reads_its_upstream_bytes_by_ranges_through_the_api(browser, service):
    mark = _open(browser, service, "/view/hubmap/HBM000BW")
    browser.wait_for(lambda: browser.evaluate("(window.cfdbViewer.rows.signal || 0) > 0"), "the bigWig's signal")
    browser.pump(1.0)
    assert _console_errors(browser, mark) == []
    proxied = [e["params"]["response"] for e in browser.events[mark:] if e.get("method") == "Network.responseReceived"
               and e["params"]["response"]["url"] == f"http://localhost:{service.api_port}/data/hubmap/HBM000BW"]
    assert proxied and {r["status"] for r in proxied} == {206}
    assert browser.evaluate("window.cfdbViewer.spec.xDomain") == {"chromosome": "chr1", "interval": [1, 1_000_000]}
    _assert_drawn(browser, 1000)


def test_a_failed_build_shows_its_error_sentence(browser, service):
    mark = _open(browser, service, "/view/encode/ENCFF000BAD")  # its catalog md5 does not match its bytes
    browser.wait_for(lambda: browser.evaluate("document.body.dataset.phase") == "failed", "the failure", timeout_s=90)
    message = browser.evaluate("document.getElementById('message').textContent")
    assert message.startswith("Preparing this file failed:") and "do not match the catalog checksum" in message
    assert browser.evaluate("document.querySelector('#meta [data-state]').dataset.state") == "failed"
    assert _console_errors(browser, mark) == []


def _rows(browser: Browser) -> list[list[str]]:
    return browser.evaluate("""[...document.querySelectorAll('#listing tbody tr')].map(tr => [
        tr.closest('section').dataset.dcc, tr.dataset.localId, tr.dataset.state, tr.children[1].textContent,
        tr.children[2].textContent, tr.querySelector('a.button') ? tr.querySelector('a.button').getAttribute('href') : ''])""")


def _loaded(browser: Browser) -> bool:
    return browser.evaluate("!document.body.dataset.loading && document.getElementById('status').textContent !== 'Loading…'")


def test_catalog_lists_files_with_states_filters_pages_and_links_views(browser, service):
    mark = _open(browser, service, "/")
    browser.wait_for(lambda: _loaded(browser), "the catalog")
    with service.client() as client:
        files = client.get("/files", params={"limit": 500}).json()["files"]
    rows = _rows(browser)
    assert [(r[0], r[1], r[2], r[3]) for r in rows] == [(f["dcc"], f["local_id"], f["state"], f["format"]) for f in files]
    states = {r[1]: r[2] for r in rows}
    assert states["ENCFF000SAM"] == "ready" and states["ENCFF000BAD"] == "failed"
    assert states["ENCFF000CSV"] == "passthrough" and states["ENCFF000NOSUM"] == "unprocessable"
    assert states["HBM000BED"] == "missing"
    views = {r[1]: r[5] for r in rows}
    assert views["ENCFF000SAM"] == "/view/encode/ENCFF000SAM" and views["ENCFF000CSV"] == ""
    assert next(r[4] for r in rows if r[1] == "4DNFIVCF0001").endswith("KiB")
    browser.screenshot(IMAGES / "viewer-catalog.png")

    # The filter narrows the page shown, and says so.
    browser.evaluate("""(() => { const box = document.getElementById('filter'); box.value = 'narrowpeak';
        box.dispatchEvent(new Event('input')); })()""")
    assert [r[1] for r in _rows(browser)] == ["ENCFF000NPK"]
    assert browser.evaluate("document.getElementById('status').textContent").startswith("1 of the 11 files")

    # Pages of 4, by the API's cursors: forward to the end, then back to the first.
    _open(browser, service, "/?dcc=encode&limit=4")
    browser.wait_for(lambda: _loaded(browser), "the first encode page")
    encode = [f["local_id"] for f in files if f["dcc"] == "encode"]
    first = [r[1] for r in _rows(browser)]
    assert first == encode[:4] and browser.evaluate("document.getElementById('prev').disabled")
    browser.evaluate("document.getElementById('next').click()")
    browser.wait_for(lambda: _loaded(browser) and [r[1] for r in _rows(browser)] != first, "the next page")
    assert [r[1] for r in _rows(browser)] == encode[4:] and browser.evaluate("document.getElementById('next').disabled")
    assert browser.evaluate("document.getElementById('page').textContent") == "Page 2"
    browser.evaluate("document.getElementById('prev').click()")
    browser.wait_for(lambda: _loaded(browser) and [r[1] for r in _rows(browser)] == first, "the first page again")

    # "View" leads to the file's view.
    browser.evaluate("document.querySelector('tr[data-local-id=\"ENCFF000BED\"] a.button').click()")
    browser.wait_for(lambda: browser.evaluate("location.pathname") == "/view/encode/ENCFF000BED", "the view")
    browser.wait_for(lambda: browser.evaluate("document.body.dataset.phase") == "ready", "the view to render")
    assert _console_errors(browser, mark) == []
