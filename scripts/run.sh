#!/usr/bin/env bash
# Start the service on the embedded defaults: the Dagster daemon and webserver and the API, on a
# local data directory. Generates the demo catalog unless CFDB_CATALOG names another one.
# Ctrl-C stops everything this script started.
set -euo pipefail
cd "$(dirname "$0")/.."
export CFDB_DATA_DIR="${CFDB_DATA_DIR:-$PWD/.cfdb}"
export DAGSTER_HOME="${DAGSTER_HOME:-$CFDB_DATA_DIR/dagster_home}"
export CFDB_DAGSTER_PORT="${CFDB_DAGSTER_PORT:-3000}"
export CFDB_DAGSTER_URL="${CFDB_DAGSTER_URL:-http://localhost:$CFDB_DAGSTER_PORT}"
API_PORT="${CFDB_API_PORT:-8000}"
BIN=.venv/bin

mkdir -p "$CFDB_DATA_DIR" "$DAGSTER_HOME"
[ -f "$DAGSTER_HOME/dagster.yaml" ] || cp dagster.yaml "$DAGSTER_HOME/dagster.yaml"
if [ -z "${CFDB_CATALOG:-}" ]; then
  "$BIN/python" -m synthetic.demo "$CFDB_DATA_DIR/demo" >/dev/null
  export CFDB_CATALOG="$CFDB_DATA_DIR/demo/catalog.jsonl"
fi
logs="$CFDB_DATA_DIR/logs"; mkdir -p "$logs"

# Create (or upgrade) the instance's storage once, before two processes race to create its tables.
"$BIN/dagster" instance migrate >"$logs/migrate.log" 2>&1 || { cat "$logs/migrate.log"; exit 1; }

pids=()
stop() {
  trap - INT TERM EXIT
  echo; echo "Stopping..."
  for pid in "${pids[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || true; done
  sleep 2
  for pid in "${pids[@]}"; do kill -KILL -- "-$pid" 2>/dev/null || true; done
  exit 0
}
trap stop INT TERM EXIT

# setsid: each service gets its own process group, so stop() reaches its children too.
setsid "$BIN/dagster-daemon" run -w workspace.yaml >"$logs/daemon.log" 2>&1 & pids+=($!)
setsid "$BIN/dagster-webserver" -w workspace.yaml -h 0.0.0.0 -p "$CFDB_DAGSTER_PORT" >"$logs/webserver.log" 2>&1 & pids+=($!)
setsid "$BIN/uvicorn" serve.asgi:app --host 0.0.0.0 --port "$API_PORT" >"$logs/api.log" 2>&1 & pids+=($!)

healthy() { "$BIN/python" -c "import urllib.request as u; u.urlopen('http://127.0.0.1:$API_PORT/health', timeout=2)" 2>/dev/null; }
for _ in $(seq 1 60); do healthy && break; sleep 1; done
healthy || { echo "The API did not start; see $logs/api.log"; tail -20 "$logs/api.log"; exit 1; }

cat <<MSG
cfdb-assets is running (data in $CFDB_DATA_DIR, logs in $logs)
  API        http://localhost:$API_PORT      (catalog: $CFDB_CATALOG)
  Dagster UI $CFDB_DAGSTER_URL

Try:
  curl -i http://localhost:$API_PORT/data/encode/ENCFF000BED        # 202 + job on the first GET
  curl -s http://localhost:$API_PORT/files/encode/ENCFF000BED       # state, and data_url/index_url when ready

Press Ctrl-C to stop.
MSG
wait -n "${pids[@]}" || true
echo "A service exited; see the logs in $logs"
exit 1
