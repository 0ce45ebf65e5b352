"""The ASGI entry point for uvicorn: ``uvicorn serve.asgi:app`` (settings from the environment).

A configuration that cannot work stops the process with its sentence, not a stack trace."""

from resources import CatalogError, LedgerError, SettingsError, StoreError
from serve.app import create_app

try:
    app = create_app()
except (SettingsError, CatalogError, LedgerError, StoreError) as exc:
    raise SystemExit(f"cfdb-assets API cannot start: {exc}") from None
