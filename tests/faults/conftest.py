"""The stacks the fault tests share: one service per module (starting one costs ~20 s), torn down
before the next module starts its own."""

from __future__ import annotations

import pytest

from tests.faults.harness import can_mount
from tests.faults.scenarios import postgres_stack, sqlite_stack


@pytest.fixture(scope="module")
def pg_stack(tmp_path_factory):
    """The real service (scripts/run.sh) whose ledger is a throwaway Postgres schema behind a proxy."""
    with postgres_stack(tmp_path_factory.mktemp("faults-pg")) as stack:
        yield stack


@pytest.fixture(scope="module")
def sqlite_full_stack(tmp_path_factory):
    """The real service whose SQLite ledger is alone on a 16 MB tmpfs."""
    why = can_mount()
    if why is not None:  # never a mock instead: say why the real fault cannot be made here
        pytest.fail(f"a tmpfs cannot be mounted here ({why}); the SQLite disk-full case needs one (root)")
    with sqlite_stack(tmp_path_factory.mktemp("faults-sqlite")) as stack:
        yield stack
