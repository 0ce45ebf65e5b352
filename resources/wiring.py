"""The composition root of the adapters: the one place the API and the Dagster code location build
the catalog, store, ledger and fetcher that one Settings names (and where a catalog location's scheme
picks its implementation, as ``open_store`` does for stores)."""

from __future__ import annotations

from dataclasses import dataclass

from resources.catalog import Catalog, CatalogError
from resources.catalog_jsonl import FileCatalog, S3Catalog
from resources.catalog_mongo import MongoCatalog
from resources.fetcher import SourceFetcher
from resources.ledger import Ledger
from resources.settings import Settings
from resources.store import ArtifactStore, open_store

__all__ = ["Adapters", "adapters", "open_catalog"]


@dataclass(frozen=True)
class Adapters:
    """The four adapters of one deployment."""

    catalog: Catalog
    store: ArtifactStore
    ledger: Ledger
    fetcher: SourceFetcher

    def check(self) -> None:
        """Fail loudly at startup (CatalogError, StoreError, LedgerError) rather than answer 404s
        and 503s later."""
        for adapter in (self.catalog, self.store, self.ledger):
            adapter.check()

    def as_resources(self) -> dict[str, Catalog | ArtifactStore | Ledger | SourceFetcher]:
        """The adapters as Dagster resources, by the names assets and sensors ask for."""
        return {"catalog": self.catalog, "store": self.store, "ledger": self.ledger, "fetcher": self.fetcher}


def adapters(settings: Settings) -> Adapters:
    """The adapters these settings name (not yet checked); SettingsError when the settings do not
    fit their profile (the production guard: ``Settings.check``)."""
    settings.check()
    return Adapters(
        catalog=open_catalog(settings.catalog, settings.catalog_database, settings.dccs, settings.s3_endpoint_url),
        store=open_store(settings.store, settings.s3_endpoint_url),
        ledger=Ledger(url=settings.ledger_url),
        fetcher=SourceFetcher(
            allow_http_loopback=settings.allow_http_loopback,
            allow_file_urls=settings.allow_file_urls,
            upstream_hosts=list(settings.upstream_hosts),
        ),
    )


def open_catalog(
    location: str, database: str = "cfdb", dccs: tuple[str, ...] | None = None, endpoint_url: str | None = None
) -> Catalog:
    """``mongodb://`` or ``mongodb+srv://`` → MongoCatalog; ``s3://bucket/key`` → S3Catalog; a file
    path → FileCatalog. Documents of DCCs outside ``dccs`` are reported as skipped."""
    served = list(dccs) if dccs is not None else None
    if location.startswith(("mongodb://", "mongodb+srv://")):
        return MongoCatalog(uri=location, database=database, dccs=served)
    if location.startswith("s3://"):
        bucket, _, key = location.removeprefix("s3://").partition("/")
        if not bucket or not key:
            raise CatalogError(f"Invalid catalog location {location!r}: expected s3://bucket/key.jsonl.")
        return S3Catalog(bucket=bucket, key=key, endpoint_url=endpoint_url, dccs=served)
    if "://" in location and not location.startswith("file://"):
        raise CatalogError(
            f"Unsupported catalog location {location!r}: expected a file path, file://, s3://, "
            "mongodb:// or mongodb+srv://."
        )
    return FileCatalog(path=location.removeprefix("file://"), dccs=served)
