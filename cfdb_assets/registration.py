"""Catalog registration: a selection of catalog files goes into the ledger's ``sources`` and their
cache keys into the DCC × family partition sets, so an operator can backfill them from the Dagster
UI with no request behind them (the on-demand sensor is otherwise the only writer).

``register`` is the whole of it over plain callables (tested without Dagster); ``build_registration``
wraps it in a job with a typed launchpad config and a daily schedule (off until an operator turns it
on). Idempotent: a second run with the same selection adds nothing; a file whose checksum changed gets
its new key (the old one stays until housekeeping retires it).

(No ``from __future__ import annotations``: Dagster reads the op's config type at runtime.)
"""

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import dagster as dg
from pydantic import Field

from cfdb_assets.names import family_name
from cfdb_assets.planning import OutputOptions, access_refusal, plan_for, source_fields
from resources import Catalog, FileRecord, Ledger, SourceSpec

__all__ = ["RegistrationConfig", "RegistrationReport", "build_registration", "register"]

PAGE = 1000  # catalog records read per call
REGISTRATION_TAG = "cfdb/registration"  # one registration at a time (dagster.yaml tag limit)


class RegistrationConfig(dg.Config):
    """Which catalog files to register. Every filter is optional; they combine with AND."""

    dccs: list[str] = Field(default_factory=list, description="DCCs (submissions), e.g. ['encode']; empty: all served")
    formats: list[str] = Field(default_factory=list, description="Formats, e.g. ['BED', 'VCF']; empty: all processed")
    min_size: int | None = Field(default=None, description="Smallest source size in bytes (files of unknown size are skipped when set)")
    max_size: int | None = Field(default=None, description="Largest source size in bytes (files of unknown size are skipped when set)")
    local_ids: list[str] = Field(default_factory=list, description="Only these accessions")
    limit: int | None = Field(default=None, description="Register at most this many files")
    batch_size: int = Field(default=1000, description="Sources and partitions written per batch")


@dataclass
class RegistrationReport:
    """What a registration saw and did, per DCC and format."""

    seen: int = 0
    registered: int = 0  # new partitions (new sources or keys)
    already: int = 0  # selected, and already registered
    skipped: Counter = field(default_factory=Counter)  # reason → files
    by_format: Counter = field(default_factory=Counter)  # "dcc/format" → files selected

    def metadata(self) -> dict:
        return {
            "seen": dg.MetadataValue.int(self.seen),
            "registered": dg.MetadataValue.int(self.registered),
            "already registered": dg.MetadataValue.int(self.already),
            "skipped": dg.MetadataValue.json(dict(self.skipped)),
            "selected by dcc/format": dg.MetadataValue.json(dict(sorted(self.by_format.items()))),
        }


def register(
    catalog: Catalog,
    ledger: Ledger,
    options: OutputOptions,
    config: RegistrationConfig,
    served_dccs: list[str],
    existing: Callable[[str], set[str]],
    add_partitions: Callable[[str, list[str]], None],
) -> RegistrationReport:
    """Register the selected files: sources first, then their partitions (a partition always has
    its source), a batch at a time. ``existing(name)`` gives a partition set's keys once;
    ``add_partitions(name, keys)`` adds keys to it."""
    dccs = [d.strip().lower() for d in config.dccs]  # as the URLs spell them
    unserved = sorted(set(dccs) - set(served_dccs))
    if unserved:
        raise ValueError(f"DCC {', '.join(unserved)} is not served here; choose from {', '.join(served_dccs)} "
                         "(CFDB_DCCS).")
    report = RegistrationReport()
    known: dict[str, set[str]] = {}
    batch: list[SourceSpec] = []
    formats = {f.lower() for f in config.formats}

    def flush() -> None:
        ledger.register_sources(batch)
        new: dict[str, list[str]] = {}
        for spec in batch:
            name = family_name(spec.dcc, spec.family)
            if name not in known:  # once per partition set and run (not setdefault: it would read every time)
                known[name] = existing(name)
            keys = known[name]
            if spec.cache_key in keys:
                report.already += 1
            else:
                keys.add(spec.cache_key)
                new.setdefault(name, []).append(spec.cache_key)
        for name, keys in new.items():
            add_partitions(name, keys)
            report.registered += len(keys)
        batch.clear()

    for record in _records(catalog, dccs or served_dccs, config.local_ids):
        report.seen += 1
        plan = plan_for(record, options)
        reason = _skip_reason(record, plan, config, formats, served_dccs)
        if reason:
            report.skipped[reason] += 1
            continue
        report.by_format[f"{record.dcc}/{plan.route.format}"] += 1
        batch.append(SourceSpec(**source_fields(record, plan)))
        if len(batch) >= config.batch_size:
            flush()
        if config.limit is not None and report.by_format.total() >= config.limit:
            break
    flush()
    return report


def _records(catalog: Catalog, dccs: list[str], local_ids: list[str]) -> Iterator[FileRecord]:
    for dcc in dccs:
        if local_ids:
            yield from (r for r in (catalog.get(dcc, i) for i in local_ids) if r is not None)
            continue
        after = None
        while page := catalog.list(dcc, PAGE, after):
            yield from page
            after = page[-1].local_id


def _skip_reason(record: FileRecord, plan, config: RegistrationConfig, formats: set[str],
                 served: list[str]) -> str | None:
    if record.dcc not in served:
        return "DCC not served here (CFDB_DCCS)"
    if access_refusal(record):
        return "not public (HuBMAP access level)"
    if not plan.route.processed:
        return "passthrough format (served as is)"
    if plan.refusal:
        return "no md5 or sha256 (not content-addressable)"
    if not record.access_url:
        return "no access URL"
    if formats and plan.route.format.lower() not in formats:
        return "format not selected"
    if config.min_size is not None and (record.size is None or record.size < config.min_size):
        return "smaller than min_size (or size unknown)"
    if config.max_size is not None and (record.size is None or record.size > config.max_size):
        return "larger than max_size (or size unknown)"
    return None


def build_registration(served_dccs: list[str], options: OutputOptions) -> tuple[dg.JobDefinition, dg.ScheduleDefinition]:
    """The ``register_catalog`` job and its daily schedule (stopped until an operator starts it)."""

    @dg.op(description="Registers the selected catalog files: their sources in the ledger, their "
                       "cache keys in the DCC × family partition sets.")
    def register_files(context: dg.OpExecutionContext, config: RegistrationConfig, catalog: Catalog,
                       ledger: Ledger) -> dg.Output:
        instance = context.instance

        def add(name: str, keys: list[str]) -> None:
            instance.add_dynamic_partitions(name, keys)
            context.log.info(f"{name}: {len(keys)} partitions added.")

        try:
            report = register(catalog, ledger, options, config, served_dccs,
                              existing=lambda name: set(instance.get_dynamic_partitions(name)), add_partitions=add)
        except ValueError as exc:
            raise dg.Failure(description=str(exc)) from None
        context.add_output_metadata(report.metadata())
        return dg.Output(None)

    @dg.job(name="register_catalog", tags={REGISTRATION_TAG: "writer"}, executor_def=dg.in_process_executor,
            description="Register catalog files for backfills: select by DCC, format, size, accession.")
    def register_catalog():
        register_files()

    schedule = dg.ScheduleDefinition(
        name="register_catalog_daily", job=register_catalog, cron_schedule="0 3 * * *",
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description="Registers every processable file of the served DCCs (new files and changed checksums).",
    )
    return register_catalog, schedule
