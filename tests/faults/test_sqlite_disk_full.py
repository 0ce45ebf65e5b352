"""The SQLite ledger on a tiny filesystem that fills up mid-processing: every write fails with
"database or disk is full" until the space is freed; then every job must still complete."""

from __future__ import annotations

from tests.faults.scenarios import DiskFull, ledger_outage


def test_sqlite_ledger_on_a_full_filesystem_leaves_no_job_stuck(sqlite_full_stack):
    stack = sqlite_full_stack
    out = ledger_outage(stack, DiskFull(stack.ledger_dir))
    assert out.survived, (out.problems, out.stuck, out.failed, out.notes)
    probes = out.notes["probes during the outage"]
    assert probes.get("hit 200", 0) > 0, probes
    # The fault bit: at least one write the service needed was refused while the disk was full.
    assert probes.get("miss 503", 0) > 0, probes
