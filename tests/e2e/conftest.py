"""Fixtures for the end-to-end tests: one running service per session."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from synthetic.demo import write_demo
from tests.e2e.service import Service


@pytest.fixture(scope="session")
def service(tmp_path_factory):
    root = tmp_path_factory.mktemp("service")
    catalog = write_demo(root / "catalog")
    svc = Service(root, {"CFDB_CATALOG": str(catalog), "CFDB_FAILURE_RETRY_S": "6"})
    svc.start()
    yield svc
    svc.stop()


def catalog_doc(service: Service, local_id: str) -> dict:
    for line in Path(service.env["CFDB_CATALOG"]).read_text().splitlines():
        doc = json.loads(line)
        if doc["local_id"] == local_id:
            return doc
    raise KeyError(local_id)
