#!/usr/bin/env bash
# Start the service on the embedded defaults: the Dagster daemon and webserver and the API, on a
# local data directory. Generates the demo catalog unless CFDB_CATALOG names another one.
# A service that exits is restarted; Ctrl-C (or SIGTERM) stops everything this script started.
set -euo pipefail
cd "$(dirname "$0")/.."
export CFDB_DATA_DIR="${CFDB_DATA_DIR:-$PWD/.cfdb}"
own_home=${DAGSTER_HOME:+yes}
export DAGSTER_HOME="${DAGSTER_HOME:-$CFDB_DATA_DIR/dagster_home}"
export CFDB_DAGSTER_PORT="${CFDB_DAGSTER_PORT:-3000}"
export CFDB_DAGSTER_URL="${CFDB_DAGSTER_URL:-http://localhost:$CFDB_DAGSTER_PORT}"
API_PORT="${CFDB_API_PORT:-8000}"
export CFDB_API_URL="${CFDB_API_URL:-http://localhost:$API_PORT}"
BIN=.venv/bin

mkdir -p "$CFDB_DATA_DIR" "$DAGSTER_HOME"
# The embedded instance is the repository's dagster.yaml, refreshed on every start (an old copy would
# keep an old configuration); a DAGSTER_HOME of your own keeps its dagster.yaml.
if [ -z "$own_home" ] || [ ! -f "$DAGSTER_HOME/dagster.yaml" ]; then cp dagster.yaml "$DAGSTER_HOME/dagster.yaml"; fi
if [ -z "${CFDB_CATALOG:-}" ]; then
  "$BIN/python" -m synthetic.demo "$CFDB_DATA_DIR/demo" >/dev/null
  export CFDB_CATALOG="$CFDB_DATA_DIR/demo/catalog.jsonl"
fi
logs="$CFDB_DATA_DIR/logs"; mkdir -p "$logs"

# Create (or upgrade) the instance's storage once, before two processes race to create its tables.
"$BIN/dagster" instance migrate >"$logs/migrate.log" 2>&1 || { cat "$logs/migrate.log"; exit 1; }

# Supervision: each service runs in its own process group (setsid), so one kill reaches its
# children. A service that exits is restarted after a backoff (1 s, doubling to 30 s, back to 1 s
# once it has stayed up 60 s); the others keep running. Ctrl-C or SIGTERM stops every group.
daemon=("$BIN/dagster-daemon" run -w workspace.yaml)
webserver=("$BIN/dagster-webserver" -w workspace.yaml -h 0.0.0.0 -p "$CFDB_DAGSTER_PORT")
api=("$BIN/uvicorn" serve.asgi:app --http serve.fast_protocol:ArtifactProtocol --host 0.0.0.0 --port "$API_PORT")
declare -A pid=() since=() backoff=() due=()
groups=()  # every group ever started: a crashed daemon's runs in flight live on in its old group
timer=

start() {  # start service $1 (the name of its command array), its log appended to logs/$1.log
  local -n argv=$1
  setsid "${argv[@]}" >>"$logs/$1.log" 2>&1 &
  pid[$1]=$! since[$1]=$SECONDS; groups+=("$!")
}

stop() {
  trap - INT TERM EXIT; set +e
  echo; echo "Stopping..."
  [ -n "$timer" ] && kill "$timer" 2>/dev/null
  for g in "${groups[@]}"; do kill -TERM -- "-$g" 2>/dev/null; done
  for _ in $(seq 1 50); do  # a grace of up to 10 s, then KILL whatever is left
    alive=; for g in "${groups[@]}"; do kill -0 -- "-$g" 2>/dev/null && alive=1; done
    [ -z "$alive" ] && break; sleep 0.2
  done
  for g in "${groups[@]}"; do kill -KILL -- "-$g" 2>/dev/null; done
  exit "${1:-0}"
}
trap 'stop 0' INT TERM
trap 'stop $?' EXIT  # a failed startup still stops what it started, and still exits non-zero

for name in daemon webserver api; do : >"$logs/$name.log"; backoff[$name]=1; start "$name"; done

healthy() { "$BIN/python" -c "import urllib.request as u; u.urlopen('http://127.0.0.1:$API_PORT/health', timeout=2)" 2>/dev/null; }
for _ in $(seq 1 60); do healthy && break; sleep 1; done
healthy || { echo "The API did not start; see $logs/api.log"; tail -20 "$logs/api.log"; exit 1; }

cat <<MSG
cfdb-assets is running (data in $CFDB_DATA_DIR, logs in $logs)
  API        http://localhost:$API_PORT      (catalog: $CFDB_CATALOG)
  Viewer     http://localhost:$API_PORT/
  Dagster UI $CFDB_DAGSTER_URL

Try:
  curl -i http://localhost:$API_PORT/data/encode/ENCFF000BED        # 202 + job on the first GET
  curl -s http://localhost:$API_PORT/files/encode/ENCFF000BED       # state, and data_url/index_url when ready

Press Ctrl-C to stop.
MSG

# Wait for any service (or the backoff timer) to end; restart services whose backoff is over.
while :; do
  next=
  for name in "${!due[@]}"; do
    if (( due[$name] <= SECONDS )); then unset "due[$name]"; start "$name"
    elif [ -z "$next" ] || (( due[$name] < next )); then next=${due[$name]}; fi
  done
  timer=
  if [ -n "$next" ]; then sleep $(( next - SECONDS )) & timer=$!; fi
  # `wait` returns at once on SIGINT/SIGTERM, whose trap then stops everything.
  status=0; ended=; wait -n -p ended "${pid[@]}" $timer || status=$?
  if [ -n "$timer" ]; then kill "$timer" 2>/dev/null || true; fi
  for name in "${!pid[@]}"; do
    [ "${pid[$name]}" = "$ended" ] || continue
    unset "pid[$name]"
    (( SECONDS - since[$name] >= 60 )) && backoff[$name]=1
    due[$name]=$(( SECONDS + backoff[$name] ))
    msg="$(date '+%F %T') $name (pid $ended) exited with status $status; restarting in ${backoff[$name]} s"
    echo "$msg"; echo "run.sh: $msg" >>"$logs/$name.log"
    backoff[$name]=$(( backoff[$name] * 2 > 30 ? 30 : backoff[$name] * 2 ))
  done
done
