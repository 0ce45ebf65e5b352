#!/usr/bin/env bash
# Run the whole suite: Postgres must be up (ledger tests run on SQLite and Postgres), and the
# JavaScript clients are installed from the npm registry when a test needs them.
set -euo pipefail
cd "$(dirname "$0")/.."
export CFDB_TEST_POSTGRES_URL="${CFDB_TEST_POSTGRES_URL:-postgresql://postgres@127.0.0.1:5432/test}"
exec .venv/bin/python -m pytest "$@"
