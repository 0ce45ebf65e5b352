"""Test helpers shared by the asset and API tests: build a file's artifacts for real, in process."""

from __future__ import annotations

import dagster as dg

from cfdb_assets.definitions import build_definitions
from resources.wiring import adapters
from resources import Settings
from serve.files import Files


def files_for(settings: Settings) -> Files:
    res = adapters(settings)
    return Files(settings, res["catalog"], res["store"], res["ledger"])


def build_artifacts(settings: Settings, dcc: str, local_id: str, instance: dg.DagsterInstance | None = None,
                    run_config: dict | None = None) -> tuple[str, dg.ExecuteInProcessResult]:
    """Request a file and run its family job in process (real tools): returns (cache_key, result)."""
    files = files_for(settings)
    record = files.lookup(dcc, local_id)
    plan = files.plan(record)
    job, _ = files.request(record, plan)
    instance = instance or dg.DagsterInstance.ephemeral()
    name = f"{record.dcc}_{plan.route.family}"
    instance.add_dynamic_partitions(name, [plan.cache_key])
    result = build_definitions(settings).resolve_job_def(name).execute_in_process(
        partition_key=plan.cache_key,
        instance=instance,
        tags={"cfdb/job_id": job.job_id},
        run_config=run_config,
        raise_on_error=False,
    )
    return plan.cache_key, result
