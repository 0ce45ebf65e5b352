"""The viewer's pages and static files over HTTP (serve.viewer): content types, cache headers, HEAD,
versioned asset URLs, and the sentence a server without the vendored Gosling bundle answers."""

from __future__ import annotations

import html
import re
import shutil
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from serve.app import create_app
from serve.viewer import GOSLING_BUNDLE, IMMUTABLE, MISSING_VENDOR, STATIC, TEMPLATES, Viewer


@pytest.fixture
def client(settings, store):
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.fixture
def static(tmp_path) -> Path:
    """A copy of the package's static files, with a stand-in Gosling bundle."""
    folder = tmp_path / "static"
    shutil.copytree(STATIC, folder, ignore=shutil.ignore_patterns("vendor"))
    (folder / "vendor").mkdir()
    (folder / GOSLING_BUNDLE).write_text("export const embed = () => null;\n")
    return folder


def _viewer_client(static: Path) -> TestClient:
    return TestClient(Starlette(routes=Viewer(("4dn", "encode"), static=static).routes()))


def test_catalog_page_is_html_with_the_dccs_and_versioned_assets(client):
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert page.headers["cache-control"] == "no-cache"
    assert 'data-dccs="4dn,encode,hubmap"' in page.text
    assert re.search(r'src="/static/catalog\.js\?v=[0-9a-f]{12}"', page.text)
    head = client.head("/")
    assert head.status_code == 200 and head.content == b""


def test_view_page_maps_gosling_and_the_spec_module_to_versioned_urls(static):
    with _viewer_client(static) as client:
        page = client.get("/view/encode/ENCFF000SAM")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'data-dcc="encode" data-local-id="ENCFF000SAM"' in page.text
    importmap = re.search(r'<script type="importmap">(.*?)</script>', page.text).group(1)
    assert re.search(r'"gosling": "/static/vendor/gosling\.js\?v=[0-9a-f]{12}"', importmap)
    assert re.search(r'"cfdb/spec": "/static/spec\.js\?v=[0-9a-f]{12}"', importmap)


def test_view_without_the_vendored_libraries_says_how_to_install_them(static):
    (static / GOSLING_BUNDLE).unlink()
    with _viewer_client(static) as client:
        page = client.get("/view/encode/ENCFF000SAM")
    assert page.status_code == 503
    assert page.headers["content-type"].startswith("text/html")
    assert "make run" in MISSING_VENDOR and "scripts/setup.sh" in MISSING_VENDOR
    assert html.escape(MISSING_VENDOR) in page.text


def test_view_refuses_path_parameters_outside_the_safe_alphabet(client):
    page = client.get("/view/encode/bad$id")
    assert page.status_code == 400 and "Invalid file" in page.text


def test_static_files_have_types_etags_and_revalidate_unless_versioned(client):
    css = client.get("/static/viewer.css")
    assert css.status_code == 200
    assert css.headers["content-type"].startswith("text/css")
    assert css.headers["cache-control"] == "no-cache"
    assert css.headers["x-content-type-options"] == "nosniff"
    assert client.get("/static/view.js").headers["content-type"].startswith("text/javascript")

    cached = client.get("/static/viewer.css", headers={"If-None-Match": css.headers["etag"]})
    assert cached.status_code == 304

    versioned = client.get("/static/viewer.css?v=0123456789ab")
    assert versioned.headers["cache-control"] == IMMUTABLE
    head = client.head("/static/viewer.css")
    assert head.status_code == 200 and head.content == b"" and head.headers["content-length"] == css.headers["content-length"]


def test_static_files_never_leave_the_static_folder(client):
    for path in ("/static/../app.py", "/static/%2e%2e/app.py", "/static/nope.js"):
        assert client.get(path).status_code == 404


def test_an_asset_url_changes_when_its_file_does(static):
    viewer = Viewer(("encode",), static=static)
    before = viewer.asset_url("viewer.css")
    (static / "viewer.css").write_text("body { color: red; }\n")
    after = viewer.asset_url("viewer.css")
    assert before != after and after.startswith("/static/viewer.css?v=")


def test_templates_only_name_static_files_that_exist():
    for template in TEMPLATES.glob("*.html"):
        for path in re.findall(r"\{\{static:([^}]+)\}\}", template.read_text()):
            assert (STATIC / path).is_file() or path == GOSLING_BUNDLE, (template.name, path)
