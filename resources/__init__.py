"""Adapters to the outside world: catalog, artifact store, request ledger, source fetcher; the
settings that name them, the records they store, and the byte ranges they serve.

Each adapter is a Dagster ``ConfigurableResource`` that also works without Dagster. Every error type
a caller is expected to handle is exported here. Imports nothing of ours.
"""

from resources.catalog import Catalog, CatalogError, FileRecord, LoadReport
from resources.catalog_jsonl import FileCatalog, S3Catalog
from resources.catalog_mongo import MongoCatalog
from resources.fetcher import (
    ChecksumMismatch,
    DRSForbidden,
    DRSNoAccessMethod,
    FetchError,
    PermanentFetchError,
    SourceFetcher,
    Upstream,
    UpstreamNotFound,
    UpstreamRangeNotSatisfiable,
    UpstreamTimeout,
)
from resources.ledger import AdmissionRejected, ErrorKind, Job, JobState, Ledger, LedgerError, SourceRow, SourceSpec
from resources.ranges import ByteRange, MalformedRange, RangeNotSatisfiable
from resources.records import Artifact, Manifest, SortedStage, SourceIdentity
from resources.settings import Settings, SettingsError
from resources.store import ArtifactMissing, ArtifactStore, LocalStore, StoreError, open_store
from resources.store_s3 import S3Store
from resources.wiring import Adapters, adapters, open_catalog

__all__ = [
    "Adapters",
    "AdmissionRejected",
    "Artifact",
    "ArtifactMissing",
    "ArtifactStore",
    "ByteRange",
    "Catalog",
    "CatalogError",
    "ChecksumMismatch",
    "DRSForbidden",
    "DRSNoAccessMethod",
    "ErrorKind",
    "FetchError",
    "FileCatalog",
    "FileRecord",
    "Job",
    "JobState",
    "Ledger",
    "LedgerError",
    "LoadReport",
    "LocalStore",
    "MalformedRange",
    "Manifest",
    "MongoCatalog",
    "PermanentFetchError",
    "RangeNotSatisfiable",
    "S3Catalog",
    "S3Store",
    "Settings",
    "SettingsError",
    "SortedStage",
    "SourceFetcher",
    "SourceIdentity",
    "SourceRow",
    "SourceSpec",
    "StoreError",
    "Upstream",
    "UpstreamNotFound",
    "UpstreamRangeNotSatisfiable",
    "UpstreamTimeout",
    "adapters",
    "open_catalog",
    "open_store",
]
