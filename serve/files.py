"""What the endpoints do, as plain functions over the resources: look a file up, tell its state,
request its preparation, describe a job. Handlers in ``serve.app`` only parse and map."""

from __future__ import annotations

import math
import re
import time
from urllib.parse import urljoin, urlsplit
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cfdb_assets.formats import PASSTHROUGH, RAW
from cfdb_assets.planning import OutputOptions, Plan, plan_for
from resources import ArtifactStore, Catalog, FileRecord, Job, Ledger, Settings, SourceSpec
from resources.ledger import AdmissionRejected
from serve.errors import HTTPProblem

__all__ = ["JOB_STATUS", "FileState", "Files", "Sidecar"]

MANIFEST_CACHE_S = 60.0
MANIFEST_CACHE_SIZE = 4096
PARAM = re.compile(r"^[A-Za-z0-9._-]{1,256}$")
# The original service's job vocabulary, kept for its clients.
JOB_STATUS = {"queued": "pending", "running": "running", "succeeded": "completed", "failed": "failed"}


# 4DN publishes index sidecars next to its files (reference §1.4); "bw" is deliberately not one.
SIDECAR_FORMATS = {"bai", "tbi", "csi", "beddb", "pairs_px2", "bg_px2"}
SIDECAR_BASES = {"4dn": "https://data.4dnucleome.org"}


@dataclass(frozen=True)
class Sidecar:
    """An upstream index file published by the DCC itself."""

    url: str
    filename: str
    size: int | None


@dataclass(frozen=True)
class FileState:
    """A file's plan and where it stands: passthrough, unprocessable, missing, queued, running,
    ready or failed."""

    record: FileRecord
    plan: Plan
    state: str
    manifest: dict[str, Any] | None = None
    job: Job | None = None


class Files:
    """The service logic behind /data, /index, /files and /jobs."""

    def __init__(self, settings: Settings, catalog: Catalog, store: ArtifactStore, ledger: Ledger):
        self.settings, self.catalog, self.store, self.ledger = settings, catalog, store, ledger
        self.options = OutputOptions(compression_level=settings.compression_level)
        self.draining = False  # set when the server shuts down: new work gets 503
        self._manifests: dict[str, tuple[float, dict[str, Any]]] = {}

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
        if name == "hubmap" and record.data_access_level != "public":
            level = record.data_access_level or "unspecified"
            raise HTTPProblem(
                403,
                f"This file requires {level} access and is not available through this API; "
                "use the HuBMAP portal.",
            )
        return record

    def manifest(self, key: str) -> dict[str, Any] | None:
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
        """The DCC's own index for this file (4DN ``extra_files``), or None. Unlike the original,
        an entry that is not an index is never served as one (its §11.12)."""
        base = SIDECAR_BASES.get(record.dcc)
        extra = record.extra or {}
        fourdn = extra.get("fourdn") if isinstance(extra.get("fourdn"), dict) else {}
        entries = extra.get("extra_files") or fourdn.get("extra_files") or []
        if base is None or not isinstance(entries, list):
            return None
        entry = next((e for e in entries if isinstance(e, dict) and _sidecar_format(e) in SIDECAR_FORMATS), None)
        if entry is None:
            return None
        href = entry.get("href")
        if not isinstance(href, str) or not href:
            raise HTTPProblem(502, "Upstream sidecar entry is missing required `href` field")
        url = urljoin(base, href)
        parts = urlsplit(url)
        loopback = parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost")
        allowed = (parts.scheme == "https" and parts.hostname == urlsplit(base).hostname) or (
            loopback and self.settings.allow_http_loopback
        )
        if not allowed:
            raise HTTPProblem(502, "Upstream sidecar URL failed allowlist validation")
        size = entry.get("file_size")
        return Sidecar(url, href.rstrip("/").rsplit("/", 1)[-1], size if isinstance(size, int) else None)

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
                out.append(FileState(record, plan, "passthrough"))
            elif plan.cache_key is None:
                out.append(FileState(record, plan, "unprocessable"))
            elif manifests[plan.cache_key] is not None:
                out.append(FileState(record, plan, "ready", manifest=manifests[plan.cache_key]))
            else:
                job = jobs.get(plan.cache_key)
                state = "missing" if job is None else {"succeeded": "missing"}.get(job.state, job.state)
                out.append(FileState(record, plan, state, job=job))
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
        spec = SourceSpec(
            cache_key=plan.cache_key,
            dcc=record.dcc,
            local_id=record.local_id,
            format=plan.route.format,
            family=plan.route.family,
            checksum=plan.checksum,
            size=record.size,
        )
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
            "progress": None,
            "error": job.error,
            "superseded_by": None,
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
            "format": plan.route.format,
            "family": plan.route.family,
            "state": fs.state,
            "cache_key": plan.cache_key,
            "job": None,
            "data_url": None,
            "index_url": None,
            "index_type": None,
        }
        if fs.state == "passthrough":
            view["data_url"] = f"/data/{record.dcc}/{record.local_id}"
        if fs.state == "unprocessable":
            view["error"] = plan.refusal
        if fs.manifest:
            artifacts = fs.manifest["artifacts"]
            view["data_url"] = f"/artifacts/{plan.cache_key}/{artifacts['data']['name']}"
            view["index_url"] = f"/artifacts/{plan.cache_key}/{artifacts['index']['name']}"
            view["index_type"] = fs.manifest.get("index_type")
        if fs.job is not None:
            view["job"] = {
                "job_id": fs.job.job_id,
                "status": JOB_STATUS.get(fs.job.state, fs.job.state),
                "url": f"/jobs/{fs.job.job_id}",
                "error": fs.job.error,
            }
        return view


def _sidecar_format(entry: dict) -> str | None:
    fmt = entry.get("file_format")
    name = fmt.get("display_title") if isinstance(fmt, dict) else fmt
    return name.strip().lower() if isinstance(name, str) else None
