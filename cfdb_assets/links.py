"""Links between the two faces of a file: the API's answer and the Dagster UI's asset partition and
runs. Pure: the base URLs come from Settings (CFDB_API_URL, CFDB_DAGSTER_URL)."""

from __future__ import annotations

from urllib.parse import quote, urlencode

__all__ = ["asset_partition_url", "file_url", "runs_url"]


def asset_partition_url(dagster_url: str, dcc: str, family: str, cache_key: str) -> str:
    """The UI page of a file's partition of the ``index`` asset (its materializations, its runs)."""
    return f"{dagster_url}/assets/{quote(dcc)}/{quote(family)}/index?{urlencode({'view': 'partitions', 'partition': cache_key})}"


def runs_url(dagster_url: str, local_id: str) -> str:
    """The UI's run list filtered to one accession's runs (tag cfdb/local_id), backfill runs included
    (the list shows only a backfill's own row otherwise)."""
    return f"{dagster_url}/runs?{urlencode({'q[]': f'tag:cfdb/local_id={local_id}', 'view': 'RUNS'})}"


def file_url(api_url: str, dcc: str, local_id: str) -> str:
    """The API's /files answer for a file: its state and artifact URLs."""
    return f"{api_url}/files/{quote(dcc)}/{quote(local_id)}"
