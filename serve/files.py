"""What the endpoints do, as plain methods over the resources: look a file up, decide what a
request for its bytes gets (hit, proxy or a job), tell its state, page the catalog, request its
preparation, describe a job. Handlers in ``serve.endpoints`` only parse and map."""

from __future__ import annotations

import base64
import json
import math
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from cfdb_assets.formats import PASSTHROUGH, RAW
from cfdb_assets.names import Stage
from cfdb_assets.links import asset_partition_url
from cfdb_assets.planning import OutputOptions, Plan, access_refusal, plan_for, source_fields
from resources import (
    AdmissionRejected,
    ArtifactStore,
    Catalog,
    FileRecord,
    Job,
    JobState,
    Ledger,
    Manifest,
    Settings,
    SourceSpec,
)
from serve.errors import HTTPProblem
from serve.sidecars import Sidecar, find_sidecar

__all__ = ["JOB_STATUS", "FileState", "FileStatus", "Files", "Hit", "Proxy"]

MANIFEST_CACHE_S = 60.0
MANIFEST_CACHE_SIZE = 4096
PAGE_MAX = 500
PARAM = re.compile(r"^[A-Za-z0-9._-]{1,256}$")
JOB_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# The original service's job vocabulary, kept for its clients.
JOB_STATUS = {
    JobState.QUEUED: "pending",
    JobState.REQUESTED: "pending",
    JobState.RUNNING: "running",
    JobState.SUCCEEDED: "completed",
    JobState.FAILED: "failed",
}


class FileStatus(StrEnum):
    """Where a catalog file stands (the ``state`` of /files)."""

    PASSTHROUGH = "passthrough"  # served as the upstream bytes
    UNPROCESSABLE = "unprocessable"  # a processed format without a usable checksum
    MISSING = "missing"  # no artifacts and no active job
    QUEUED = "queued"
    RUNNING = "running"
    READY = "ready"
    FAILED = "failed"


@dataclass(frozen=True)
class FileState:
    """A file's plan and where it stands."""

    record: FileRecord
    plan: Plan
    state: FileStatus
    manifest: Manifest | None = None
    job: Job | None = None


@dataclass(frozen=True)
class Hit:
    """A request answered from the store: the artifact ``name`` of a ready file."""

    file: FileState
    name: str


@dataclass(frozen=True)
class Proxy:
    """A request answered with upstream bytes (a passthrough format, ?raw=true, a DCC sidecar)."""

    url: str
    filename: str | None
    media_type: str


class Files:
    """The service logic behind /data, /index, /files and /jobs."""

    def __init__(
        self, settings: Settings, catalog: Catalog, store: ArtifactStore, ledger: Ledger, options: OutputOptions
    ):
        self.settings, self.catalog, self.store, self.ledger = settings, catalog, store, ledger
        self.options = options
        self.draining = False  # set when the server shuts down: new work gets 503
        self._manifests: dict[str, tuple[float, Manifest]] = {}

    def check_params(self, **params: str) -> None:
        """Path parameters are ``[A-Za-z0-9._-]{1,256}`` (400 otherwise, never a framework 422)."""
        for name, value in params.items():
            if not PARAM.match(value):
                raise HTTPProblem(400, f"Invalid {name}: use 1-256 characters from A-Z a-z 0-9 . _ -")

    def lookup(self, dcc: str, local_id: str, need_access_url: bool = False) -> FileRecord:
        """The catalog record, after the original's checks in order: DCC, existence, access URL,
        HuBMAP access level."""
        self.check_params(dcc=dcc, local_id=local_id)
        name = dcc.strip().lower()
        if name not in self.settings.dccs:
            raise HTTPProblem(400, f"Unknown DCC '{dcc}'. Valid DCCs: {', '.join(self.settings.dccs)}")
        record = self.catalog.get(name, local_id)
        if record is None:
            raise HTTPProblem(404, "File not found")
        if need_access_url and not record.access_url:
            raise HTTPProblem(501, "File has no access URL")
        refusal = access_refusal(record)
        if refusal:
            raise HTTPProblem(403, refusal)
        return record

    def answer(self, kind: str, dcc: str, local_id: str, raw: bool, head: bool) -> Hit | Proxy | Job:
        """What a /data or /index request gets: stored bytes, upstream bytes, or the job preparing
        them (a GET miss); HEAD never creates work (404 on a miss)."""
        record = self.lookup(dcc, local_id, need_access_url=(kind == Stage.DATA))
        plan = self.plan(record)
        if raw or plan.route.family in (PASSTHROUGH, RAW):
            if kind == Stage.DATA:
                assert record.access_url
                return Proxy(record.access_url, record.filename, plan.route.media_type)
            # The DCC's own index, for files we do not process. A processed file's index is always
            # ours: it is built from, and bound to, the data /data serves.
            sidecar = self.sidecar(record)
            if sidecar:
                return Proxy(sidecar.url, sidecar.filename, "application/octet-stream")
            raise HTTPProblem(404, "No upstream index sidecar available" if raw else "No index file available for this file format")
        if plan.cache_key is None:
            raise HTTPProblem(422, f"{plan.refusal} Add ?raw=true for the upstream file.")
        manifest = self.manifest(plan.cache_key)
        if manifest is not None:
            name = (manifest.data if kind == Stage.DATA else manifest.index).name
            return Hit(FileState(record, plan, FileStatus.READY, manifest=manifest), name)
        return self.miss(record, plan, kind, head)

    def miss(self, record: FileRecord, plan: Plan, kind: str, head: bool) -> Job:
        """A processed file whose artifacts are not in the store: HEAD gets 404, GET its job (a
        remembered permanent failure is 422)."""
        if head:
            what, upstream = ("artifact", "file") if kind == Stage.DATA else ("index", "sidecar")
            raise HTTPProblem(
                404,
                f"Processed {what} not yet available. Issue a GET to trigger preprocessing, "
                f"or add ?raw=true for the upstream {upstream}.",
            )
        job, _created = self.request(record, plan)
        if job.state == JobState.FAILED:
            raise self.failed_answer(job)
        return job

    def ready(self, kind: str, dcc: str, local_id: str) -> bool:
        """The /data and /index ``status`` answer: can these bytes be served now?"""
        record = self.lookup(dcc, local_id, need_access_url=kind == Stage.DATA)
        fs = self.state(record)
        if fs.state == FileStatus.PASSTHROUGH:
            if kind == Stage.INDEX and self.sidecar(record) is None:
                raise HTTPProblem(404, "No index file available for this file format")
            return True
        return fs.state == FileStatus.READY

    def describe(self, dcc: str, local_id: str, prepare: bool) -> tuple[FileState, Job | None]:
        """A file's state; with ``prepare``, a missing or failed file is requested (its new job)."""
        record = self.lookup(dcc, local_id)
        fs = self.state(record)
        if not prepare or fs.state not in (FileStatus.MISSING, FileStatus.FAILED):
            return fs, None
        job, _ = self.request(record, fs.plan)
        if job.state == JobState.FAILED:
            raise self.failed_answer(job)
        return self.state(record), job

    def page(self, dcc: str | None, limit: int, cursor: str | None) -> tuple[list[FileState], str | None]:
        """Up to ``limit`` files (one DCC, or all in CFDB_DCCS order) after ``cursor``, and the
        cursor of the next page (None at the end)."""
        if dcc is not None and dcc not in self.settings.dccs:
            raise HTTPProblem(400, f"Unknown DCC '{dcc}'. Valid DCCs: {', '.join(self.settings.dccs)}")
        if not 1 <= limit <= PAGE_MAX:
            raise HTTPProblem(400, f"limit must be a whole number from 1 to {PAGE_MAX}.")
        position = _decode_cursor(cursor)
        dccs = [dcc] if dcc else list(self.settings.dccs)
        if position and position[0] in dccs:
            dccs = dccs[dccs.index(position[0]) :]
        records: list[FileRecord] = []
        for name in dccs:
            after = position[1] if position and name == position[0] else None
            records += self.catalog.list(name, limit - len(records), after)
            if len(records) >= limit:
                break
        next_cursor = _encode_cursor(records[-1].dcc, records[-1].local_id) if len(records) == limit else None
        return self.states(records), next_cursor

    def job(self, job_id: str) -> Job:
        """The job with this id (404 for an unknown or malformed id)."""
        job = self.ledger.job(job_id) if JOB_ID.fullmatch(job_id) else None
        if job is None:
            raise HTTPProblem(404, "Job not found")
        return job

    def manifest(self, key: str) -> Manifest | None:
        """The store's manifest, cached briefly when present: a ready set's manifest never changes,
        and every range request of a browser needs it (misses are never cached)."""
        now = time.monotonic()
        cached = self._manifests.get(key)
        if cached and cached[0] > now:
            return cached[1]
        manifest = self.store.manifest(key)
        if manifest is not None:
            if len(self._manifests) >= MANIFEST_CACHE_SIZE:
                self._manifests.clear()
            self._manifests[key] = (now + MANIFEST_CACHE_S, manifest)
        return manifest

    def forget(self, key: str) -> None:
        """Drop a cached manifest (its artifacts vanished from the store)."""
        self._manifests.pop(key, None)

    def sidecar(self, record: FileRecord) -> Sidecar | None:
        """The DCC's own index for this file, or None (``serve.sidecars``)."""
        return find_sidecar(record, self.settings.allow_http_loopback)

    def plan(self, record: FileRecord) -> Plan:
        return plan_for(record, self.options)

    def state(self, record: FileRecord) -> FileState:
        """Where one file stands (one store read, at most one ledger read)."""
        return self.states([record])[0]

    def states(self, records: list[FileRecord]) -> list[FileState]:
        """Where each file stands, with one ledger query for the whole list."""
        plans = [self.plan(r) for r in records]
        keys = [p.cache_key for p in plans if p.cache_key]
        manifests = {k: self.manifest(k) for k in keys}
        pending = [k for k in keys if manifests[k] is None]
        jobs = self.ledger.latest_jobs(pending)
        out = []
        for record, plan in zip(records, plans, strict=True):
            if plan.route.family in (PASSTHROUGH, RAW):
                out.append(FileState(record, plan, FileStatus.PASSTHROUGH))
            elif plan.cache_key is None:
                out.append(FileState(record, plan, FileStatus.UNPROCESSABLE))
            elif manifests[plan.cache_key] is not None:
                out.append(FileState(record, plan, FileStatus.READY, manifest=manifests[plan.cache_key]))
            else:
                job = jobs.get(plan.cache_key)
                # A succeeded job whose artifacts are gone (removed from the store) is missing again.
                out.append(FileState(record, plan, _file_status(job), job=job))
        return out

    def request(self, record: FileRecord, plan: Plan) -> tuple[Job, bool]:
        """Attach to the active job of this file's cache_key, or create one (503 when processing
        is off or the server is draining; 429 at the admission ceiling, for new work only)."""
        assert plan.cache_key and plan.checksum
        if not record.access_url:
            raise HTTPProblem(501, "File has no access URL")
        if not self.settings.processing or self.draining:
            why = "is shutting down" if self.draining else "has preprocessing disabled"
            raise HTTPProblem(
                503,
                f"This server {why}; please retry, or add ?raw=true for the upstream file.",
                headers={"Retry-After": "30"},
            )
        spec = SourceSpec(**source_fields(record, plan))
        try:
            return self.ledger.request(spec, self.settings.failure_retry, self.settings.max_active_jobs or None)
        except AdmissionRejected:
            raise HTTPProblem(
                429, "Too many active preprocessing jobs; please retry shortly.", headers={"Retry-After": "120"}
            ) from None

    def failed_answer(self, job: Job) -> HTTPProblem:
        """A remembered permanent failure: 422 with the error, until the retry window passes."""
        retry = self.settings.failure_retry
        finished = job.finished_at or datetime.now(UTC)
        remaining = max(1, math.ceil((finished + retry - datetime.now(UTC)).total_seconds()))
        return HTTPProblem(
            422,
            f"Preprocessing this file failed: {job.error} It will not be retried for {remaining} s; "
            "add ?raw=true for the upstream file.",
            headers={"Retry-After": str(remaining)},
            fields={"job_id": job.job_id, "status": "failed", "error": job.error},
        )

    def job_view(self, job: Job) -> dict[str, Any]:
        """The /jobs/{id} body: the original's seven fields plus run and timing details."""
        source = self.ledger.source(job.cache_key)
        run_url = f"{self.settings.dagster_url}/runs/{job.run_id}" if job.run_id else None
        return {
            "job_id": job.job_id,
            "status": JOB_STATUS.get(job.state, job.state),
            "stages_done": list(job.stages),
            "artifacts": {s: job.cache_key for s in job.stages},
            "progress": job.progress if job.active else None,
            "error": job.error,
            "superseded_by": job.superseded_by,
            "worker": json.loads(job.worker) if job.worker else None,
            "cache_key": job.cache_key,
            "dcc": source.dcc if source else None,
            "local_id": source.local_id if source else None,
            "run_id": job.run_id,
            "run_url": run_url,
            "created_at": job.created_at.isoformat(),
            "updated_at": job.updated_at.isoformat(),
            "finished_at": job.finished_at.isoformat() if job.finished_at else None,
        }

    def file_view(self, fs: FileState) -> dict[str, Any]:
        """The /files body for one file."""
        record, plan = fs.record, fs.plan
        view: dict[str, Any] = {
            "dcc": record.dcc,
            "local_id": record.local_id,
            "filename": record.filename,
            "size": record.size,
            "format": plan.route.format,
            "family": plan.route.family,
            "state": fs.state,
            "cache_key": plan.cache_key,
            "job": None,
            "data_url": None,
            "index_url": None,
            "index_type": None,
        }
        if fs.state == FileStatus.PASSTHROUGH:
            view["data_url"] = f"/data/{record.dcc}/{record.local_id}"
        if fs.state == FileStatus.UNPROCESSABLE:
            view["error"] = plan.refusal
        if plan.cache_key:  # a processed file: its partition in the Dagster UI
            view["asset_url"] = asset_partition_url(self.settings.dagster_url, record.dcc, plan.route.family,
                                                    plan.cache_key)
        if fs.manifest:
            view["data_url"] = f"/artifacts/{plan.cache_key}/{fs.manifest.data.name}"
            view["index_url"] = f"/artifacts/{plan.cache_key}/{fs.manifest.index.name}"
            view["index_type"] = fs.manifest.index_type
        if fs.job is not None:
            view["job"] = {
                "job_id": fs.job.job_id,
                "status": JOB_STATUS.get(fs.job.state, fs.job.state),
                "url": f"/jobs/{fs.job.job_id}",
                "error": fs.job.error,
            }
        return view


def _file_status(job: Job | None) -> FileStatus:
    """A processed file without artifacts, by its newest job. A succeeded job whose artifacts are
    gone (removed from the store) leaves the file missing again."""
    if job is None or job.state == JobState.SUCCEEDED:
        return FileStatus.MISSING
    return {JobState.QUEUED: FileStatus.QUEUED, JobState.REQUESTED: FileStatus.QUEUED,
            JobState.RUNNING: FileStatus.RUNNING, JobState.FAILED: FileStatus.FAILED}[job.state]


def _encode_cursor(dcc: str, local_id: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([dcc, local_id]).encode()).decode()


def _decode_cursor(cursor: str | None) -> tuple[str, str] | None:
    if not cursor:
        return None
    try:
        dcc, local_id = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        return str(dcc), str(local_id)
    except (ValueError, TypeError):
        raise HTTPProblem(400, "Invalid cursor; use the next_cursor of a previous /files answer.") from None
