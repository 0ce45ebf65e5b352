"""Catalog registration: the selection, idempotence, changed checksums, and the job on a real
Dagster instance, then a backfill-style run of a registered partition with no request behind it."""

from __future__ import annotations

import json

import dagster as dg
import pytest

from cfdb_assets.definitions import build_definitions
from cfdb_assets.planning import OutputOptions, plan_for
from cfdb_assets.registration import RegistrationConfig, register
from resources import Ledger, Settings, adapters
from tests.helpers import build_artifacts, files_for

SERVED = ["4dn", "encode", "hubmap"]


class Partitions:
    """The partition sets, in memory (the job uses the Dagster instance)."""

    def __init__(self):
        self.sets: dict[str, set[str]] = {}
        self.writes: list[tuple[str, int]] = []
        self.reads: list[str] = []

    def existing(self, name: str) -> set[str]:
        self.reads.append(name)
        return set(self.sets.get(name, set()))

    def add(self, name: str, keys: list[str]) -> None:
        self.sets.setdefault(name, set()).update(keys)
        self.writes.append((name, len(keys)))


def _register(settings: Settings, partitions: Partitions, **config):
    parts = adapters(settings)
    return register(parts.catalog, parts.ledger, OutputOptions.from_settings(settings),
                    RegistrationConfig(**config), SERVED, partitions.existing, partitions.add)


def test_selected_files_get_a_source_and_a_partition_and_the_rest_a_reason(settings):
    partitions = Partitions()

    report = _register(settings, partitions, dccs=["ENCODE"], formats=["bed"])

    catalog = adapters(settings).catalog
    bed_keys = {plan_for(catalog.get("encode", i), OutputOptions.from_settings(settings)).cache_key
                for i in ("ENCFF000BED", "ENCFF000BAD")}
    assert partitions.sets == {"encode_intervals": bed_keys}
    assert report.registered == 2 and report.already == 0
    assert report.by_format == {"encode/BED": 2}
    assert report.skipped == {"format not selected": 2, "passthrough format (served as is)": 1,
                              "no md5 or sha256 (not content-addressable)": 1}
    assert report.seen == 6
    ledger = Ledger(url=settings.ledger_url)
    assert {ledger.source(k).local_id for k in bed_keys} == {"ENCFF000BED", "ENCFF000BAD"}
    assert all(ledger.latest_jobs([k]) == {} for k in bed_keys)  # registered, not requested


def test_a_second_registration_adds_nothing(settings):
    partitions = Partitions()
    first = _register(settings, partitions)
    reads = list(partitions.reads)
    second = _register(settings, partitions)

    assert first.registered == 7 and first.skipped["not public (HuBMAP access level)"] == 1
    assert len(reads) == len(set(reads)) == 4  # each partition set read once per run, not per file
    assert (second.registered, second.already) == (0, first.registered)
    assert sum(n for _, n in partitions.writes) == first.registered


def test_size_range_accessions_and_limit_narrow_the_selection(settings):
    by_ids = _register(settings, Partitions(), local_ids=["ENCFF000SAM", "4DNFIVCF0001", "NOPE"])
    assert by_ids.by_format == {"encode/SAM": 1, "4dn/VCF": 1}

    limited = _register(settings, Partitions(), limit=2, batch_size=1)
    assert limited.registered == 2

    sizes = sorted(r.size for r in adapters(settings).catalog.list("encode", 100) if r.size)
    small = _register(settings, Partitions(), dccs=["encode"], max_size=sizes[0])
    assert small.registered <= 1 and "larger than max_size (or size unknown)" in small.skipped


def test_a_dcc_not_served_is_refused_with_a_sentence(settings):
    with pytest.raises(ValueError, match="DCC lincs is not served here; choose from 4dn, encode, hubmap"):
        _register(settings, Partitions(), dccs=["lincs"])


def test_a_changed_checksum_registers_the_new_key(settings, tmp_path):
    partitions = Partitions()
    _register(settings, partitions, local_ids=["ENCFF000BED"])
    catalog = tmp_path / "catalog.jsonl"
    lines = []
    for line in open(settings.catalog).read().splitlines():
        doc = json.loads(line)
        if doc["local_id"] == "ENCFF000BED":
            doc["md5"] = "f" * 32
        lines.append(json.dumps(doc))
    catalog.write_text("\n".join(lines) + "\n")

    report = _register(Settings.from_environ({"CFDB_DATA_DIR": str(settings.data_dir), "CFDB_CATALOG": str(catalog)}),
                       partitions, local_ids=["ENCFF000BED"])

    assert report.registered == 1 and len(partitions.sets["encode_intervals"]) == 2


def test_the_job_registers_into_the_instance_and_a_registered_partition_builds_with_no_request(settings, store):
    defs = build_definitions(settings)
    with dg.instance_for_test() as instance:
        result = defs.resolve_job_def("register_catalog").execute_in_process(
            instance=instance,
            run_config={"ops": {"register_files": {"config": {"dccs": ["encode"], "formats": ["BED", "narrowPeak"]}}}},
        )
        assert result.success
        (output,) = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_OUTPUT]
        metadata = output.step_output_data.metadata  # the report, on the run page
        assert (metadata["registered"].value, metadata["selected by dcc/format"].value) == (
            3, {"encode/BED": 2, "encode/narrowPeak": 1})
        keys = set(instance.get_dynamic_partitions("encode_intervals"))
        assert len(keys) == 3  # BED, the mismatching BED, narrowPeak

        files = files_for(settings)
        record = files.lookup("encode", "ENCFF000NPK")
        key = files.plan(record).cache_key
        assert key in keys
        built = defs.resolve_job_def("encode_intervals").execute_in_process(partition_key=key, instance=instance)

    assert built.success
    assert files.file_view(files.state(record))["state"] == "ready"


def test_a_partition_added_by_hand_fails_with_how_to_register_it(settings):
    defs = build_definitions(settings)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("encode_intervals", ["0" * 32])
        result = defs.resolve_job_def("encode_intervals").execute_in_process(
            partition_key="0" * 32, instance=instance, raise_on_error=False)

    (failure,) = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    description = failure.step_failure_data.user_failure_data.description
    assert description.startswith(f"Partition {'0' * 32} has no source in the ledger")
    assert "register_catalog" in description


def test_a_successful_rebuild_of_a_failed_file_clears_its_failure(settings, store):
    # The operator re-executes the failed run from the UI (same tags); once it succeeds, the
    # jobs_succeeded sensor clears the failure the ledger remembered.
    files = files_for(settings)
    record = files.lookup("encode", "ENCFF000BED")
    job, _ = files.request(record, files.plan(record))
    files.ledger.finish(job.job_id, succeeded=False, error="A transient tool failure.", permanent=True)
    defs = build_definitions(settings)
    key = files.plan(record).cache_key
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("encode_intervals", [key])
        rerun = defs.resolve_job_def("encode_intervals").execute_in_process(
            partition_key=key, instance=instance, tags={"cfdb/job_id": job.job_id, "cfdb/attempt": "1"})
        assert rerun.success
        success = next(e for e in instance.all_logs(rerun.run_id) if e.dagster_event
                       and e.dagster_event.event_type == dg.DagsterEventType.RUN_SUCCESS).dagster_event
        context = dg.build_run_status_sensor_context(
            sensor_name="jobs_succeeded", dagster_event=success, dagster_instance=instance,
            dagster_run=instance.get_run_by_id(rerun.run_id))
        defs.get_sensor_def("jobs_succeeded")(context, ledger=files.ledger)

    cleared = files.ledger.job(job.job_id)
    assert (cleared.state, cleared.error) == ("succeeded", None)
    assert files.file_view(files.state(record))["state"] == "ready"


def test_find_prints_a_files_key_state_and_links(settings, store, capsys, monkeypatch):
    from cfdb_assets import find

    for name, value in {"CFDB_DATA_DIR": str(settings.data_dir), "CFDB_CATALOG": settings.catalog,
                        "CFDB_DAGSTER_URL": "http://ui.example", "CFDB_API_URL": "http://api.example"}.items():
        monkeypatch.setenv(name, value)
    key, result = build_artifacts(settings, "encode", "ENCFF000BED")
    assert result.success

    assert find.main(["encode", "ENCFF000BED"]) == 0
    out = dict(line.split(None, 1) for line in capsys.readouterr().out.splitlines())
    assert (out["cache_key"], out["state"]) == (key, "ready")
    assert out["partition"] == (f"http://ui.example/assets/encode/intervals/index?view=partitions&partition={key}")
    assert out["/files"] == "http://api.example/files/encode/ENCFF000BED"
    assert out["runs"] == "http://ui.example/runs?q%5B%5D=tag%3Acfdb%2Flocal_id%3DENCFF000BED&view=RUNS"

    assert find.main(["encode", "NOPE"]) == 1
    assert "encode/NOPE is not in the catalog" in capsys.readouterr().err
