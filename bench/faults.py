"""Faults injected into the real service vs what survived: the scenarios of ``tests/faults`` (same
code, ``tests.faults.scenarios``), printed as one table.

Two stacks, each the real `scripts/run.sh` on a temporary data directory: the ledger in a throwaway
Postgres schema behind a TCP proxy (for the outage, the daemon and worker kills, hostile HTTP,
garbage inputs, SSRF), and the ledger alone on a 16 MB tmpfs (the disk-full outage; needs root).
The daemon is killed three ways (``tests.faults.scenarios.DAEMON_MODES``; the suite runs the first):
with the other jobs' runs already queued, with files requested while it is down, and between a
sensor tick's marking jobs ``requested`` and the creation of their runs.
Every address is loopback; every wait is bounded. Exits 0 whatever survived: the table says.

    .venv/bin/python bench/faults.py [--only NAME ...] [--outage-s 20] [--json PATH]

NAME: routes, garbage, ssrf, postgres, daemon, daemon-down, daemon-tick, worker, sqlite.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.faults.harness import can_mount  # noqa: E402
from tests.faults.scenarios import (  # noqa: E402
    DiskFull,
    Outcome,
    PostgresDown,
    daemon_killed,
    garbage_inputs,
    ledger_outage,
    postgres_stack,
    sqlite_stack,
    ssrf_refused,
    unmatched_routes,
    worker_killed,
)

POSTGRES_SCENARIOS = {
    "routes": lambda stack, args: unmatched_routes(stack),
    "garbage": lambda stack, args: garbage_inputs(stack),
    "ssrf": lambda stack, args: ssrf_refused(stack),
    "postgres": lambda stack, args: ledger_outage(stack, PostgresDown(stack.proxy), args.outage_s),
    "daemon": lambda stack, args: daemon_killed(stack, "runs"),
    "daemon-down": lambda stack, args: daemon_killed(stack, "down"),
    "daemon-tick": lambda stack, args: daemon_killed(stack, "tick"),
    "worker": lambda stack, args: worker_killed(stack),
}
SQLITE_SCENARIOS = {
    "sqlite": lambda stack, args: ledger_outage(stack, DiskFull(stack.ledger_dir), args.outage_s),
}
HEADER = ("fault injected", "jobs", "completed", "stuck", "failed (error)", "time to recover", "survived")


def _run(name: str, scenario, stack, args) -> Outcome:
    started = time.monotonic()
    try:
        out = scenario(stack, args)
    except Exception as exc:  # noqa: BLE001 - a scenario that could not even run is a row too
        out = Outcome(name, "completed", problems=[f"{type(exc).__name__}: {exc}"])
        traceback.print_exc()
    out.notes["scenario seconds"] = round(time.monotonic() - started, 1)
    print(f"[{name}] survived={out.survived} {json.dumps(out.notes, default=str)}"
          + (f" problems={out.problems}" if out.problems else ""), file=sys.stderr, flush=True)
    return out


def _failed_cell(out: Outcome) -> str:
    if not out.failed:
        return "0"
    errors = sorted(set(out.failed.values()))
    first = errors[0] if len(errors[0]) <= 90 else errors[0][:87] + "..."
    more = f" (+{len(errors) - 1} other)" if len(errors) > 1 else ""
    return f"{len(out.failed)}: {first}{more}"


def row(out: Outcome) -> tuple[str, ...]:
    recover = "-" if out.recover_s is None else f"{out.recover_s:.1f} s"
    if out.expect == "failed" and out.recover_s is not None:
        recover = f"{out.recover_s:.1f} s (to fail)"
    if out.survived:
        survived = "yes"
    else:
        survived = "NO: " + ("; ".join(out.problems)[:120] if out.problems else f"{len(out.stuck)} stuck")
    return (out.fault, str(len(out.job_ids)), str(len(out.completed)), str(len(out.stuck)), _failed_cell(out),
            recover, survived)


def table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in [HEADER, *rows]) for i in range(len(HEADER))]
    lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(HEADER, widths, strict=True)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in rows]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", choices=[*POSTGRES_SCENARIOS, *SQLITE_SCENARIOS])
    parser.add_argument("--outage-s", type=float, default=20.0)
    parser.add_argument("--json", type=Path, help="also write the outcomes here")
    args = parser.parse_args()
    chosen = set(args.only or [*POSTGRES_SCENARIOS, *SQLITE_SCENARIOS])
    outcomes: list[Outcome] = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="cfdb-faults-") as tmp:
        if chosen & set(POSTGRES_SCENARIOS):
            modes = tuple(m for m, name in (("runs", "daemon"), ("down", "daemon-down"), ("tick", "daemon-tick"))
                          if name in chosen)
            with postgres_stack(Path(tmp) / "pg", modes) as stack:
                for name, scenario in POSTGRES_SCENARIOS.items():
                    if name in chosen:
                        outcomes.append(_run(name, scenario, stack, args))
        if "sqlite" in chosen:
            why = can_mount()
            if why is not None:
                outcomes.append(Outcome("ledger outage: SQLite filesystem full", "completed",
                                        problems=[f"not run: a tmpfs cannot be mounted here ({why})"]))
            else:
                with sqlite_stack(Path(tmp) / "sqlite") as stack:
                    outcomes.append(_run("sqlite", SQLITE_SCENARIOS["sqlite"], stack, args))
    print(table([row(o) for o in outcomes]))
    survived = sum(o.survived for o in outcomes)
    print(f"\n{survived} of {len(outcomes)} faults survived; {time.monotonic() - started:.0f} s in all.")
    if args.json:
        args.json.write_text(json.dumps([{
            "fault": o.fault, "jobs": len(o.job_ids), "completed": len(o.completed), "stuck": o.stuck,
            "failed": o.failed, "recover_s": o.recover_s, "survived": o.survived, "problems": o.problems,
            "notes": o.notes} for o in outcomes], indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
