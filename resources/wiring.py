"""The adapters one Settings names: the single place the API and the Dagster code location build them."""

from __future__ import annotations

from resources.catalog import Catalog, open_catalog
from resources.fetcher import SourceFetcher
from resources.ledger import Ledger
from resources.settings import Settings
from resources.store import ArtifactStore, open_store

__all__ = ["adapters"]


def adapters(settings: Settings) -> dict[str, Catalog | ArtifactStore | Ledger | SourceFetcher]:
    """``catalog``, ``store``, ``ledger`` and ``fetcher`` for these settings (not yet checked)."""
    return {
        "catalog": open_catalog(settings.catalog, settings.catalog_database),
        "store": open_store(settings.store, settings.s3_endpoint_url),
        "ledger": Ledger(url=settings.ledger_url),
        "fetcher": SourceFetcher(
            allow_http_loopback=settings.allow_http_loopback, allow_file_urls=settings.allow_file_urls
        ),
    }
