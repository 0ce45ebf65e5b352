"""Fixtures for the end-to-end tests: one running service per session."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from synthetic.demo import write_demo
from tests.deploy.conftest import image  # noqa: F401 - the production image, built once per session
from tests.e2e.production import aws_resources, fresh_database
from tests.e2e.service import Service


@pytest.fixture(scope="session")
def service(tmp_path_factory):
    root = tmp_path_factory.mktemp("service")
    catalog = write_demo(root / "catalog")
    svc = Service(root, {"CFDB_CATALOG": str(catalog), "CFDB_FAILURE_RETRY_S": "6"})
    svc.start()
    yield svc
    svc.stop()


@pytest.fixture
def pg_database():
    """A fresh database on the test server (Dagster's tables and the ledger's), dropped afterwards."""
    with fresh_database() as url:
        yield url


@pytest.fixture
def aws(moto_server) -> dict[str, str]:
    """moto stands in for AWS: the run task definition in ECS, the compute-log and artifact buckets."""
    return aws_resources(moto_server)


def catalog_doc(service: Service, local_id: str) -> dict:
    for line in Path(service.env["CFDB_CATALOG"]).read_text().splitlines():
        doc = json.loads(line)
        if doc["local_id"] == local_id:
            return doc
    raise KeyError(local_id)
