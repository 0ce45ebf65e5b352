"""Adapters to the outside world: catalog, artifact store, request ledger, source fetcher.

Each is a Dagster ``ConfigurableResource`` that also works without Dagster. Imports nothing of ours.
"""

from resources.catalog import Catalog, CatalogError, FileCatalog, FileRecord, MongoCatalog, open_catalog
from resources.fetcher import ChecksumMismatch, FetchError, SourceFetcher
from resources.ledger import Job, Ledger, LedgerError, SourceRow, SourceSpec
from resources.settings import Settings, SettingsError
from resources.store import ArtifactMissing, ArtifactStore, LocalStore, S3Store, StoreError, open_store

__all__ = [
    "ArtifactMissing",
    "ArtifactStore",
    "Catalog",
    "CatalogError",
    "ChecksumMismatch",
    "FetchError",
    "FileCatalog",
    "FileRecord",
    "Job",
    "Ledger",
    "LedgerError",
    "LocalStore",
    "MongoCatalog",
    "S3Store",
    "Settings",
    "SettingsError",
    "SourceFetcher",
    "SourceRow",
    "SourceSpec",
    "StoreError",
    "open_catalog",
    "open_store",
]
