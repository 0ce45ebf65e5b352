"""The operators' loop through the real service (`scripts/run.sh`: daemon, webserver, API), driven
the way the Dagster UI drives it (its GraphQL API): register 20 catalog files selected by DCC and
format, backfill their partition sets with no HTTP request behind them, see them ready in /files;
register again and add nothing; plant leftovers and let housekeeping list, then remove, exactly them."""

from __future__ import annotations

import gzip
import json
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import httpx
import pytest
import sqlalchemy as sa

from resources import Ledger, SourceSpec, open_store
from resources.ledger import jobs as jobs_table
from synthetic.demo import document, write_demo
from synthetic.small import bed_text, vcf_text
from tests.e2e.dagster_ui import answers, backfill, launch
from tests.e2e.service import Service
from tests.helpers import manifest_for, wait_until

TIMEOUT_S = 300


@pytest.fixture(scope="module")
def operated(tmp_path_factory):
    root = tmp_path_factory.mktemp("operators")
    catalog = write_demo(root / "catalog")  # the demo's files, plus 12 BEDs and 8 VCFs to select
    sources = catalog.parent / "sources"
    docs = [json.loads(line) for line in catalog.read_text().splitlines()]
    for n in range(12):
        path = sources / f"ENCFFOPS{n:03d}.bed"
        path.write_text(bed_text(1000 + n, 300))
        docs.append(document("encode", f"ENCFFOPS{n:03d}", path, ("format:3003", "BED")))
    for n in range(8):
        path = sources / f"4DNFIOPS{n:04d}.vcf.gz"
        path.write_bytes(gzip.compress(vcf_text(2000 + n, 200).encode(), mtime=0))
        docs.append(document("4dn", f"4DNFIOPS{n:04d}", path, ("format:3016", "VCF")))
    catalog.write_text("".join(json.dumps(d, sort_keys=True) + "\n" for d in docs))
    service = Service(root, {"CFDB_CATALOG": str(catalog)})
    service.start()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{service.dagster_port}", timeout=60) as ui:
            wait_until(lambda: answers(ui), "the Dagster webserver answers")
            yield service, ui
    finally:
        service.stop()


def _launch(ui: httpx.Client, job: str, config: dict) -> str:
    run_id, status = launch(ui, job, config)
    assert status == "SUCCESS", run_id
    return run_id


def _output_metadata(service: Service, run_id: str) -> dict:
    """The op's output metadata, as the run page shows it (read from the instance's storage)."""
    with dg.DagsterInstance.from_config(str(service.dagster_home)) as instance:
        events = instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_OUTPUT)
        return {k: v.value for k, v in events[0].dagster_event.step_output_data.metadata.items()}


def test_register_backfill_reregister_then_housekeeping(operated):
    service, ui = operated
    selection = {"dccs": ["encode", "4dn"], "formats": ["BED", "VCF"], "local_ids": []}
    config = {"ops": {"register_files": {"config": selection}}}
    ops = [f"ENCFFOPS{n:03d}" for n in range(12)] + [f"4DNFIOPS{n:04d}" for n in range(8)]

    first = _output_metadata(service, _launch(ui, "register_catalog", config))
    # The demo's own BEDs and VCF are selected too: ENCFF000BED, ENCFF000BAD (same format), 4DNFIVCF0001.
    assert first["registered"] == 23, first
    assert first["selected by dcc/format"] == {"4dn/VCF": 9, "encode/BED": 14}

    for job in ("encode_intervals", "4dn_intervals"):
        backfill(ui, job)

    with service.client() as api:
        def states():
            return {i: api.get(f"/files/{'4dn' if i.startswith('4DN') else 'encode'}/{i}").json()["state"] for i in ops}
        wait_until(lambda: set(states().values()) == {"ready"}, "all 20 files ready", TIMEOUT_S)
        jobs_seen = [api.get(f"/files/encode/{i}").json()["job"] for i in ops[:12]]
    assert jobs_seen == [None] * 12  # built by the backfill: no request, no job

    second = _output_metadata(service, _launch(ui, "register_catalog", config))
    assert (second["registered"], second["already registered"]) == (0, 23)

    # Plant leftovers: an old finished job row, an uncommitted set of a dead run, an orphaned set.
    ledger = Ledger(url=service.env.get("CFDB_LEDGER_URL") or f"sqlite:///{service.data_dir / 'ledger.db'}")
    spec = SourceSpec("a" * 32, "encode", "ENCFFGONE", "BED", "intervals", "md5:" + "0" * 32, 10)
    old, _ = ledger.request(spec, timedelta(hours=1))
    ledger.finish(old.job_id, succeeded=False, error="gone")
    with ledger.engine.begin() as conn:
        conn.execute(sa.update(jobs_table).where(jobs_table.c.job_id == old.job_id)
                     .values(finished_at=datetime.now(UTC) - timedelta(days=8)))
    store = open_store(str(service.data_dir / "artifacts"))
    stale, orphan = "d" * 32, "f" * 32
    store.put_json(stale, "stage-sorted.json", {"v": 1})
    store.put_json(orphan, "manifest.json", manifest_for(orphan, ("data.bed.gz", 1)).to_json())
    for key, days in ((stale, 2), (orphan, 40)):
        then = time.time() - days * 86400
        for path in Path(store.root, key).iterdir():
            os.utime(path, (then, then))
    housekeeping = {"ops": {"tidy_up": {"config": {"run_history_days": 365}}}}

    dry = _output_metadata(service, _launch(ui, "housekeeping", housekeeping))
    assert dry["dry_run"] is True
    assert dry["finished job rows (first 50)"] == [old.job_id]
    assert dry["uncommitted artifact sets (first 50)"] == [stale]
    assert dry["orphaned artifact sets (first 50)"] == [orphan]
    assert ledger.job(old.job_id) is not None and store.get_json(stale, "stage-sorted.json")

    real = _output_metadata(service, _launch(
        ui, "housekeeping", {"ops": {"tidy_up": {"config": {"run_history_days": 365, "dry_run": False}}}}))
    assert {k: real[f"{k} (first 50)"] for k in ("finished job rows", "uncommitted artifact sets",
                                                 "orphaned artifact sets")} == {
        "finished job rows": [old.job_id], "uncommitted artifact sets": [stale], "orphaned artifact sets": [orphan]}
    assert ledger.job(old.job_id) is None
    assert {s.key for s in store.sets()} & {stale, orphan} == set()
    with service.client() as api:  # nothing a live file needs was touched
        assert {api.get(f"/files/encode/{i}").json()["state"] for i in ops[:12]} == {"ready"}
