"""Find one file's build: its cache_key, state and the links to it in the API and the Dagster UI.

    .venv/bin/python -m cfdb_assets.find encode ENCFF000BED

Reads the same settings (CFDB_*) as the service; prints a few lines, exits 1 when the file is not in
the catalog.
"""

from __future__ import annotations

import argparse
import os
import sys

from cfdb_assets.links import asset_partition_url, file_url, runs_url
from cfdb_assets.planning import OutputOptions, plan_for
from resources import Settings, adapters

__all__ = ["describe", "main"]


def describe(settings: Settings, dcc: str, local_id: str) -> list[tuple[str, str]]:
    """(label, value) lines for a file; raises LookupError when the catalog does not have it."""
    parts = adapters(settings)
    record = parts.catalog.get(dcc.strip().lower(), local_id)
    if record is None:
        raise LookupError(f"{dcc}/{local_id} is not in the catalog ({settings.catalog}).")
    plan = plan_for(record, OutputOptions.from_settings(settings))
    lines = [("file", f"{record.dcc}/{record.local_id} ({plan.route.format}, {plan.route.family})"),
             ("/files", file_url(settings.api_url, record.dcc, record.local_id)),
             ("runs", runs_url(settings.dagster_url, record.local_id))]
    if not plan.cache_key:
        return [*lines, ("state", plan.refusal or "passthrough: served as is, nothing to build")]
    job = parts.ledger.latest_jobs([plan.cache_key]).get(plan.cache_key)
    if parts.store.valid_manifest(plan.cache_key):
        state = "ready"
    elif job is not None:
        state = f"{job.state} (job {job.job_id}{': ' + job.error if job.error else ''})"
    else:
        state = "not built" + ("" if parts.ledger.source(plan.cache_key) else " (not registered)")
    return [*lines, ("cache_key", plan.cache_key), ("state", state),
            ("partition", asset_partition_url(settings.dagster_url, record.dcc, plan.route.family, plan.cache_key))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cfdb_assets.find", description=__doc__.splitlines()[0])
    parser.add_argument("dcc")
    parser.add_argument("local_id")
    args = parser.parse_args(argv)
    try:
        lines = describe(Settings.from_environ(os.environ), args.dcc, args.local_id)
    except LookupError as exc:
        print(exc, file=sys.stderr)
        return 1
    width = max(len(label) for label, _ in lines)
    for label, value in lines:
        print(f"{label:<{width}}  {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
