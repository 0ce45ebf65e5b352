"""Faults injected into one running service whose ledger is Postgres behind a TCP proxy: hostile
HTTP, garbage inputs, SSRF, a 20 s ledger outage, the daemon and a run worker killed. Each case
requests its own files (its own cache keys), so the order below only keeps the quick ones first."""

from __future__ import annotations

from tests.faults.scenarios import (
    Outcome,
    PostgresDown,
    daemon_killed,
    garbage_inputs,
    ledger_outage,
    ssrf_refused,
    unmatched_routes,
    worker_killed,
)


def _explain(out: Outcome) -> str:
    return (f"{out.fault}: problems {out.problems}; stuck {out.stuck}; failed {out.failed}; "
            f"notes {out.notes}")


def test_unmatched_routes_and_methods_answer_json_with_cors(pg_stack):
    out = unmatched_routes(pg_stack)
    assert out.survived, _explain(out)


def test_garbage_inputs_fail_with_a_sentence_naming_the_first_bad_line(pg_stack):
    out = garbage_inputs(pg_stack)
    assert out.survived, _explain(out)


def test_loopback_and_unlisted_upstreams_are_refused_before_any_connection(pg_stack):
    out = ssrf_refused(pg_stack)
    assert out.survived, _explain(out)
    assert out.notes["connections reached the loopback server"] == 0


def test_postgres_refusing_connections_for_20_s_leaves_no_job_stuck(pg_stack):
    out = ledger_outage(pg_stack, PostgresDown(pg_stack.proxy))
    assert out.survived, _explain(out)
    probes = out.notes["probes during the outage"]
    assert probes.get("miss 503", 0) > 0 and probes.get("hit 200", 0) > 0, probes
    assert len(out.completed) >= 10


def test_daemon_killed_mid_run_and_restarted_completes_its_jobs_with_no_new_request(pg_stack):
    out = daemon_killed(pg_stack)
    assert out.survived, _explain(out)


def test_worker_sigkilled_mid_pipeline_leaves_no_tool_and_completes_on_the_retry(pg_stack):
    out = worker_killed(pg_stack)
    assert out.survived, _explain(out)
