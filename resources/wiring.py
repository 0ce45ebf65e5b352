"""The composition root of the adapters: the one place the API and the Dagster code location build
the catalog, store, ledger and fetcher that one Settings names."""

from __future__ import annotations

from dataclasses import dataclass

from resources.catalog import Catalog, open_catalog
from resources.fetcher import SourceFetcher
from resources.ledger import Ledger
from resources.settings import Settings
from resources.store import ArtifactStore, open_store

__all__ = ["Adapters", "adapters"]


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
    """The adapters these settings name (not yet checked)."""
    return Adapters(
        catalog=open_catalog(settings.catalog, settings.catalog_database, settings.dccs),
        store=open_store(settings.store, settings.s3_endpoint_url),
        ledger=Ledger(url=settings.ledger_url),
        fetcher=SourceFetcher(
            allow_http_loopback=settings.allow_http_loopback, allow_file_urls=settings.allow_file_urls
        ),
    )
