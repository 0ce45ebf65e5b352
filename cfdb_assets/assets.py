"""The asset factory: per DCC × family, ``sorted`` (data) → ``index`` on a dynamic partition set
keyed by cache_key, and a job with the in-process executor.

The assets are thin: they resolve the partition through the ledger's ``sources`` table (so operator
backfills work with no request behind them), record the job's progress, and call the plain build
steps of ``cfdb_assets.build``. A failure leaves as a ``dg.Failure`` whose description is the
user-facing sentence and whose metadata says whether it is permanent.

(No ``from __future__ import annotations``: Dagster reads the asset signatures' types at runtime.)
"""

import contextlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from cfdb_assets.build import Builder, BuildError
from cfdb_assets.links import file_url
from cfdb_assets.names import ATTEMPT_TAG, JOB_ID_TAG, PERMANENT_KEY, Stage, family_name
from cfdb_assets.pipelines import PipelineError, ToolOptions
from cfdb_assets.tools import ToolError, scrub
from cfdb_assets.planning import OutputOptions
from cfdb_assets.memory import sort_memory_per_thread
from cfdb_assets.sizing import SORT_MEMORY_TAG, THREADS_TAG, size_run
from resources import ArtifactStore, Catalog, FetchError, Ledger, LedgerError, Manifest, SortedStage, SourceFetcher

__all__ = ["BuildConfig", "FamilyDefs", "FamilySpec", "Tools", "build_family"]

# Errors with a sentence for the user and a `permanent` attribute (anything else is unexpected).
EXPECTED_ERRORS = (FetchError, PipelineError, ToolError, BuildError)


@dataclass(frozen=True)
class FamilySpec:
    """One DCC × family pair: its partitions, assets and job are named from it."""

    dcc: str
    family: str

    @property
    def name(self) -> str:
        return family_name(self.dcc, self.family)


@dataclass(frozen=True)
class FamilyDefs:
    """What ``build_family`` makes: the definitions to merge, and the partitions the sensor adds to."""

    spec: FamilySpec
    definitions: dg.Definitions
    partitions: dg.DynamicPartitionsDefinition


class Tools(dg.ConfigurableResource):
    """Tool knobs and the local work directory (a run's scratch space); set from Settings."""

    work_dir: str
    threads: int
    sort_memory: str
    compression_level: int
    sized_runs: bool = False  # runs get a worker sized to their source (cfdb_assets.sizing)

    @classmethod
    def from_settings(cls, settings) -> "Tools":
        return cls(
            work_dir=str(settings.work_dir),
            threads=settings.threads,
            sort_memory=settings.sort_memory,
            compression_level=settings.compression_level,
            sized_runs=settings.sized_runs,
        )

    def builder(self, catalog: Catalog, store: ArtifactStore, fetcher: SourceFetcher, log,
                progress=lambda text: None, run_tags: Mapping[str, str] | None = None) -> Builder:
        """The build steps, with the tools sized to this run's worker when its tags say so."""
        tags = run_tags or {}
        threads = int(tags.get(THREADS_TAG) or self.threads)
        sort_memory = sort_memory_per_thread(tags.get(SORT_MEMORY_TAG) or self.sort_memory, threads)
        return Builder(
            catalog=catalog,
            store=store,
            fetcher=fetcher,
            tools=ToolOptions(threads, sort_memory, self.compression_level),
            output=OutputOptions.from_settings(self),
            work_dir=Path(self.work_dir),
            log=log,
            progress=progress,
        )


class BuildConfig(dg.Config):
    """Run config of both steps: ``force`` rebuilds an artifact set that is already published."""

    force: bool = False


@contextlib.contextmanager
def _as_failure() -> Iterator[None]:
    """Expected errors become a Failure: the sentence users see, and whether it is permanent."""
    try:
        yield
    except EXPECTED_ERRORS as exc:
        raise dg.Failure(
            description=scrub(f"{type(exc).__name__}: {exc}"),
            metadata={PERMANENT_KEY: bool(exc.permanent)},
        ) from exc


def build_family(spec: FamilySpec, run_tags: Callable[[str], Mapping[str, str]] | None = None,
                 api_url: str | None = None) -> FamilyDefs:
    """The partitions, two assets and job of one DCC × family. ``run_tags`` gives the tags of a
    partition's runs (its size, its file), whoever launches them: the sensor or a UI backfill;
    ``api_url`` links each materialization to the file's /files answer."""
    partitions = dg.DynamicPartitionsDefinition(name=spec.name)
    sorted_key = dg.AssetKey([spec.dcc, spec.family, "sorted"])
    index_key = dg.AssetKey([spec.dcc, spec.family, "index"])
    common = {"partitions_def": partitions, "group_name": spec.name,
              "kinds": {"samtools" if spec.family == "alignments" else "tabix"}}

    @dg.asset(key=sorted_key, description=f"{spec.dcc} {spec.family}: the source, fetched, verified, sorted and compressed.", **common)
    def sorted_data(context: dg.AssetExecutionContext, config: BuildConfig, catalog: Catalog, store: ArtifactStore,
                    ledger: Ledger, fetcher: SourceFetcher, tools: Tools) -> dg.MaterializeResult:
        key, job_id = context.partition_key, context.run.tags.get(JOB_ID_TAG)
        if job_id:
            ledger.mark_running(job_id, context.run_id)
        source = ledger.source(key)
        if source is None:
            raise dg.Failure(
                description=f"Partition {key} has no source in the ledger, so its file is unknown; register it "
                "with the register_catalog job (Jobs → register_catalog → Launchpad) or request the file "
                "over HTTP, then launch again.",
                metadata={PERMANENT_KEY: True},
            )
        refusal = size_run(source.family, source.size).refusal if tools.sized_runs else None
        if refusal:
            raise dg.Failure(description=refusal, metadata={PERMANENT_KEY: True})
        with _as_failure():
            builder = tools.builder(catalog, store, fetcher, context.log, _progress(context, ledger), context.run.tags)
            stage, reused = builder.sorted(key, source, config.force, label=context.run_id)
        if job_id:
            ledger.add_stage(job_id, Stage.DATA)
        return dg.MaterializeResult(metadata={**_stage_metadata(stage), **_file_link(api_url, stage.source),
                                              "reused": reused})

    @dg.asset(key=index_key, deps=[sorted_key], description=f"{spec.dcc} {spec.family}: the index of the sorted data; publishes the manifest.", **common)
    def index(context: dg.AssetExecutionContext, config: BuildConfig, catalog: Catalog, store: ArtifactStore,
              ledger: Ledger, fetcher: SourceFetcher, tools: Tools) -> dg.MaterializeResult:
        key, job_id = context.partition_key, context.run.tags.get(JOB_ID_TAG)
        with _as_failure():
            builder = tools.builder(catalog, store, fetcher, context.log, _progress(context, ledger), context.run.tags)
            manifest, reused = builder.index(key, config.force, label=context.run_id)
        if job_id:
            ledger.add_stage(job_id, Stage.INDEX)
        return dg.MaterializeResult(metadata={**_manifest_metadata(manifest),
                                              **_file_link(api_url, manifest.sorted.source), "reused": reused})

    job = dg.define_asset_job(
        spec.name,
        selection=dg.AssetSelection.assets(sorted_key, index_key),
        executor_def=dg.in_process_executor,
        config=dg.PartitionedConfig(
            partitions_def=partitions,
            run_config_for_partition_key_fn=lambda key: {},
            tags_for_partition_key_fn=run_tags or (lambda key: {}),
        ),
        description=f"Build {spec.dcc} {spec.family} artifacts for one cache_key partition.",
    )
    return FamilyDefs(spec, dg.Definitions(assets=[sorted_data, index], jobs=[job]), partitions)


def _progress(context: dg.AssetExecutionContext, ledger: Ledger):
    """Reports a step's progress on its job's ledger row; best effort (a ledger outage must not
    fail a build that can otherwise finish)."""
    job_id, attempt = context.run.tags.get(JOB_ID_TAG), int(context.run.tags.get(ATTEMPT_TAG, "1"))

    def report(text: str) -> None:
        if not job_id:
            return  # a backfill with no request behind it
        try:
            ledger.set_progress(job_id, attempt, text)
        except LedgerError as exc:
            context.log.warning(f"Progress not recorded: {exc}")

    return report


def _file_link(api_url: str | None, source) -> dict:
    """The file's /files answer, linked from the materialization (the API links back: asset_url)."""
    return {"file": dg.MetadataValue.url(file_url(api_url, source.dcc, source.local_id))} if api_url else {}


def _stage_metadata(stage: SortedStage) -> dict:
    source = stage.source
    return {
        "dcc": source.dcc,
        "local_id": source.local_id,
        "filename": source.filename or "",
        "format": source.format,
        "source_bytes": dg.MetadataValue.int(source.bytes),
        "artifact": stage.data.name,
        "artifact_bytes": dg.MetadataValue.int(stage.data.size),
        "seconds": dg.MetadataValue.float(float(stage.seconds)),
        "tools": dg.MetadataValue.json(stage.tools),
    }


def _manifest_metadata(manifest: Manifest) -> dict:
    return {
        "cache_key": manifest.cache_key,
        "index_type": manifest.index_type or "",
        "index": manifest.index.name,
        "index_bytes": dg.MetadataValue.int(manifest.index.size),
        "data_bytes": dg.MetadataValue.int(manifest.data.size),
        "seconds": dg.MetadataValue.float(float(manifest.seconds["index"])),
        "tools": dg.MetadataValue.json(manifest.tools),
    }
