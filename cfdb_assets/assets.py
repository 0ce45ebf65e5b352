"""The asset factory: per DCC × family, ``sorted`` (data) → ``index`` on a dynamic partition set
keyed by cache_key, and a job with the in-process executor.

An asset resolves its partition through the ledger's ``sources`` table (so operator backfills work
with no request behind them), fetches and verifies the source, runs the pipeline and publishes to the
store. ``manifest.json`` is written last, by the index step: before it, nothing is visible.
"""


import hashlib
import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from cfdb_assets.formats import route_for
from cfdb_assets.pipelines import DEFAULT_LEVEL, ToolOptions, build_index, build_sorted, index_kind_of, tool_versions
from cfdb_assets.planning import OutputOptions, plan_for
from resources import ArtifactMissing, ArtifactStore, Catalog, Ledger, SourceFetcher

__all__ = ["JOB_ID_TAG", "BuildConfig", "FamilySpec", "Tools", "build_family"]

JOB_ID_TAG = "cfdb/job_id"
STAGE_SORTED = "stage-sorted.json"


@dataclass(frozen=True)
class FamilySpec:
    """One DCC × family pair: its partitions, assets and job are named from it."""

    dcc: str
    family: str

    @property
    def name(self) -> str:
        return f"{self.dcc}_{self.family}"


class Tools(dg.ConfigurableResource):
    """Tool knobs and the local work directory (a run's scratch space)."""

    work_dir: str
    threads: int = 2
    sort_memory: str = "768M"
    compression_level: int = DEFAULT_LEVEL

    @property
    def options(self) -> ToolOptions:
        return ToolOptions(self.threads, self.sort_memory, self.compression_level)

    @property
    def output_options(self) -> OutputOptions:
        return OutputOptions(compression_level=self.compression_level)

    @contextmanager
    def workdir(self, run_id: str):
        """A fresh directory for one step, removed on every outcome."""
        Path(self.work_dir).mkdir(parents=True, exist_ok=True)
        path = Path(tempfile.mkdtemp(prefix=f"{run_id[:8]}-", dir=self.work_dir))
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)


class BuildConfig(dg.Config):
    """Run config of both steps: ``force`` rebuilds an artifact set that is already published."""

    force: bool = False


def _job_id(context: dg.AssetExecutionContext) -> str | None:
    return context.run.tags.get(JOB_ID_TAG)


def build_family(spec: FamilySpec) -> dg.Definitions:
    """The partitions, two assets and job of one DCC × family."""
    partitions = dg.DynamicPartitionsDefinition(name=spec.name)
    sorted_key = dg.AssetKey([spec.dcc, spec.family, "sorted"])
    index_key = dg.AssetKey([spec.dcc, spec.family, "index"])

    @dg.asset(
        key=sorted_key,
        partitions_def=partitions,
        group_name=spec.name,
        description=f"{spec.dcc} {spec.family}: the source, fetched, verified, sorted and compressed.",
        kinds={"samtools" if spec.family == "alignments" else "tabix"},
    )
    def sorted_data(
        context: dg.AssetExecutionContext,
        config: BuildConfig,
        catalog: Catalog,
        store: ArtifactStore,
        ledger: Ledger,
        fetcher: SourceFetcher,
        tools: Tools,
    ) -> dg.MaterializeResult:
        key = context.partition_key
        job_id = _job_id(context)
        if job_id:
            ledger.mark_running(job_id, context.run_id)
        source = ledger.source(key)
        if source is None:
            raise dg.Failure(f"Partition {key} has no source in the ledger; request the file first.")
        route = route_for(None, source.format)
        if not config.force:
            manifest = store.valid_manifest(key)
            stage = manifest["sorted"] if manifest else store.get_json(key, STAGE_SORTED)
            if stage and _stored_size(store, key, stage["name"]) == stage["size"]:
                context.log.info("Sorted data already in the store; reusing it.")
                if job_id:
                    ledger.add_stage(job_id, "data")
                return dg.MaterializeResult(metadata={**_meta(stage), "reused": True})

        record = catalog.get(source.dcc, source.local_id)
        if record is None or not record.access_url:
            raise dg.Failure(f"{source.dcc}/{source.local_id} is not in the catalog or has no access URL.")
        plan = plan_for(record, tools.output_options)
        if plan.cache_key != key:
            raise dg.Failure(
                f"The catalog record of {source.dcc}/{source.local_id} changed since partition {key} "
                "was requested (new checksum or settings); request the file again."
            )
        started = time.monotonic()
        with tools.workdir(context.run_id) as workdir:
            download = fetcher.download(record.access_url, workdir / "source", source.checksum)
            context.log.info(f"Fetched {download.size} bytes, checksum verified.")
            data = build_sorted(route, download.path, workdir, tools.options)
            same_bytes = os.path.samefile(data, download.path)  # an already-sorted BAM
            digest = download.sha256 if same_bytes else file_sha256(data)
            size = store.put_file(key, route.data_name, data)
            # The sort may have written the index in the same pass: stage it for the index step.
            kind = index_kind_of(data)
            staged_index = None
            if kind:
                index_path = data.with_name(f"{data.name}.{kind}")
                index_name = f"{route.data_name}.{kind}"
                staged_index = {
                    "name": index_name,
                    "kind": kind,
                    "sha256": file_sha256(index_path),
                    "size": store.put_file(key, index_name, index_path),
                }
        stage = {
            "name": route.data_name,
            "size": size,
            "sha256": digest,
            "index": staged_index,
            "seconds": round(time.monotonic() - started, 3),
            "source": {
                "dcc": source.dcc,
                "local_id": source.local_id,
                "filename": record.filename,
                "format": route.format,
                "checksum": source.checksum,
                "bytes": download.size,
                "md5": download.md5,
                "sha256": download.sha256,
            },
            "tools": tool_versions(),
            "options": tools.output_options.as_key_options(),
        }
        store.put_json(key, STAGE_SORTED, stage)
        if job_id:
            ledger.add_stage(job_id, "data")
        return dg.MaterializeResult(metadata={**_meta(stage), "reused": False})

    @dg.asset(
        key=index_key,
        deps=[sorted_key],
        partitions_def=partitions,
        group_name=spec.name,
        description=f"{spec.dcc} {spec.family}: the index of the sorted data; publishes the manifest.",
        kinds={"samtools" if spec.family == "alignments" else "tabix"},
    )
    def index(
        context: dg.AssetExecutionContext,
        config: BuildConfig,
        store: ArtifactStore,
        ledger: Ledger,
        tools: Tools,
    ) -> dg.MaterializeResult:
        key = context.partition_key
        job_id = _job_id(context)
        manifest = None if config.force else store.valid_manifest(key)
        if manifest is None:
            stage = store.get_json(key, STAGE_SORTED)
            if stage is None:
                raise dg.Failure(f"Partition {key} has no sorted data in the store; materialize the sorted asset first.")
            route = route_for(None, stage["source"]["format"])
            started = time.monotonic()
            staged = stage.get("index")
            if staged and _stored_size(store, key, staged["name"]) == staged["size"]:
                context.log.info(f"Using the {staged['kind']} index written by the sort.")
                index_name, kind, index_size, index_sha = staged["name"], staged["kind"], staged["size"], staged["sha256"]
            else:
                with tools.workdir(context.run_id) as workdir:
                    with store.local_path(key, stage["name"], workdir) as data:
                        index_path, kind = build_index(route, data, workdir, tools.options)
                    index_name = f"{stage['name']}.{kind}"
                    index_sha = file_sha256(index_path)
                    index_size = store.put_file(key, index_name, index_path)
            manifest = {
                "cache_key": key,
                "family": route.family,
                "format": route.format,
                "index_type": kind,
                "artifacts": {
                    "data": {"name": stage["name"], "size": stage["size"], "sha256": stage["sha256"]},
                    "index": {"name": index_name, "size": index_size, "sha256": index_sha, "kind": kind},
                },
                "sorted": stage,
                "source": stage["source"],
                "tools": tool_versions(),
                "options": stage["options"],
                "seconds": {"sorted": stage["seconds"], "index": round(time.monotonic() - started, 3)},
                "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
            store.put_manifest(key, manifest)
            reused = False
        else:
            context.log.info("Artifact set already published; reusing it.")
            reused = True
        if job_id:
            ledger.add_stage(job_id, "index")
        index_entry = manifest["artifacts"]["index"]
        return dg.MaterializeResult(
            metadata={
                "cache_key": key,
                "index_type": manifest["index_type"],
                "index": index_entry["name"],
                "index_bytes": dg.MetadataValue.int(index_entry["size"]),
                "data_bytes": dg.MetadataValue.int(manifest["artifacts"]["data"]["size"]),
                "seconds": dg.MetadataValue.float(float(manifest["seconds"]["index"])),
                "tools": dg.MetadataValue.json(manifest["tools"]),
                "reused": reused,
            }
        )

    job = dg.define_asset_job(
        spec.name,
        selection=dg.AssetSelection.assets(sorted_key, index_key),
        executor_def=dg.in_process_executor,
        description=f"Build {spec.dcc} {spec.family} artifacts for one cache_key partition.",
    )
    return dg.Definitions(assets=[sorted_data, index], jobs=[job])


def file_sha256(path: Path) -> str:
    """sha256 of a file (the manifest's integrity record and the artifacts' ETag)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def _stored_size(store: ArtifactStore, key: str, name: str) -> int | None:
    try:
        return store.size(key, name)
    except ArtifactMissing:
        return None


def _meta(stage: dict) -> dict:
    source = stage["source"]
    return {
        "dcc": source["dcc"],
        "local_id": source["local_id"],
        "filename": source.get("filename") or "",
        "format": source["format"],
        "source_bytes": dg.MetadataValue.int(source["bytes"]),
        "artifact": stage["name"],
        "artifact_bytes": dg.MetadataValue.int(stage["size"]),
        "seconds": dg.MetadataValue.float(float(stage["seconds"])),
        "tools": dg.MetadataValue.json(stage["tools"]),
    }
