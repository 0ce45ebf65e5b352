"""The ASGI entry point for uvicorn: ``uvicorn serve.asgi:app`` (settings from the environment)."""

from serve.app import create_app

app = create_app()
