"""The raw-ASGI artifact path (serve/fast_artifacts.py) answers exactly what the full app answers:
every header, status and byte, for the requests it takes; and it leaves every other request to the
full app. "Full app" is the same Starlette app and CORS middleware without the fast path."""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.middleware.cors import CORSMiddleware
from starlette.testclient import TestClient

from serve.app import create_app
from serve.fast_artifacts import ArtifactFastPath
from tests.helpers import build_artifacts

ORIGIN = {"Origin": "https://gosling.example"}


@pytest.fixture
def apps(settings, store):
    """(the app as served, the same app without the fast path, the paths the fast path passed on)."""
    served = create_app(settings)
    assert isinstance(served, CORSMiddleware) and isinstance(served.app, ArtifactFastPath)
    fast = served.app
    calls: list[str] = []
    inner = fast.app

    async def logged(scope, receive, send):
        if scope["type"] == "http":
            calls.append(scope["path"])
        await inner(scope, receive, send)

    fast.app = logged
    with TestClient(served) as fast_client, TestClient(create_app(settings, fast_artifacts=False)) as full_client:
        yield fast_client, full_client, calls


@pytest.mark.parametrize(("method", "headers"), [
    ("GET", {}),
    ("GET", ORIGIN),
    ("GET", {**ORIGIN, "Range": "bytes=0-99"}),
    ("GET", {"Range": "bytes=100-"}),
    ("GET", {"Range": "bytes=-50"}),
    ("GET", {"Range": "bytes=10-10"}),
    ("GET", {"Range": "bytes=0-999999999"}),  # past the end: to the end
    ("GET", {"Range": "bytes=0-9, 20-29"}),  # several: the whole file
    ("HEAD", ORIGIN),
    ("HEAD", {"Range": "bytes=5-20"}),
])
@pytest.mark.parametrize("name", ["data.bed.gz", "data.bed.gz.tbi"])
def test_the_fast_path_answers_what_the_full_app_answers(apps, settings, method, headers, name):
    fast, full, calls = apps
    key, _ = build_artifacts(settings, "encode", "ENCFF000BED")
    url = f"/artifacts/{key}/{name}"

    ours, theirs = fast.request(method, url, headers=headers), full.request(method, url, headers=headers)

    assert calls == []  # answered without the full app
    assert ours.status_code == theirs.status_code in (200, 206)
    assert ours.headers.multi_items() == theirs.headers.multi_items()
    assert ours.content == theirs.content
    if method == "GET":
        whole = (Path(settings.store) / key / name).read_bytes()
        start = int(ours.headers.get("content-range", "bytes 0-").split()[1].split("-")[0])
        assert ours.content == whole[start:start + len(ours.content)]


@pytest.mark.parametrize(("path", "headers", "status"), [
    ("{key}/data.bed.gz", {"If-None-Match": "{etag}"}, 304),
    ("{key}/data.bed.gz", {"Range": "bytes=0-9", "If-Range": '"stale"'}, 200),
    ("{key}/data.bed.gz", {"Range": "bytes=abc"}, 400),
    ("{key}/data.bed.gz", {"Range": "bytes=999999999-"}, 416),
    ("{key}/manifest.json", {}, 404),
    ("{key}/../x", {}, 404),
    ("{zero}/data.bed.gz", {}, 404),
    ("not-a-key/data.bed.gz", {}, 404),
])
def test_everything_else_is_the_full_app_s_answer(apps, settings, path, headers, status):
    fast, full, calls = apps
    key, _ = build_artifacts(settings, "encode", "ENCFF000BED")
    etag = full.head(f"/artifacts/{key}/data.bed.gz").headers["etag"]
    url = "/artifacts/" + path.format(key=key, zero="0" * 32)
    headers = {k: v.format(etag=etag) for k, v in headers.items()}

    ours, theirs = fast.get(url, headers=headers), full.get(url, headers=headers)

    assert ours.status_code == theirs.status_code == status
    assert ours.headers.multi_items() == theirs.headers.multi_items()
    assert ours.content == theirs.content
    assert calls  # the full app answered


def test_a_range_larger_than_one_body_is_streamed_by_the_full_app(apps, settings, monkeypatch):
    from serve import fast_artifacts

    fast, full, calls = apps
    monkeypatch.setattr(fast_artifacts, "SMALL_BODY", 10)
    key, _ = build_artifacts(settings, "encode", "ENCFF000BED")
    url = f"/artifacts/{key}/data.bed.gz"
    assert fast.get(url, headers={"Range": "bytes=0-5"}).status_code == 206 and calls == []
    ours, theirs = fast.get(url, headers={"Range": "bytes=0-99"}), full.get(url, headers={"Range": "bytes=0-99"})
    assert calls and ours.content == theirs.content and ours.headers.multi_items() == theirs.headers.multi_items()


def test_other_paths_and_methods_go_to_the_full_app(apps, settings):
    fast, _, calls = apps
    key, _ = build_artifacts(settings, "encode", "ENCFF000BED")
    assert fast.get("/health").status_code == 200
    assert fast.post(f"/artifacts/{key}/data.bed.gz").status_code == 405
    assert fast.options(f"/artifacts/{key}/data.bed.gz", headers={
        **ORIGIN, "Access-Control-Request-Method": "GET"}).status_code == 200  # CORS preflight
    assert calls == ["/health", f"/artifacts/{key}/data.bed.gz"]
