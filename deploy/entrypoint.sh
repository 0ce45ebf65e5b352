#!/bin/sh
# The container's command, under tini (deploy/Dockerfile): a role word starts that role; anything
# else runs exactly as given, which is how the Fargate run worker gets `dagster api execute_run ...`
# from dagster-aws's EcsRunLauncher (it overrides the command, keeps the entrypoint).
set -e
case "${1:-}" in
  api)       shift; exec uvicorn serve.asgi:app --http serve.fast_protocol:ArtifactProtocol --host 0.0.0.0 --port "${CFDB_API_PORT:-${PORT:-8000}}" "$@" ;;
  webserver) shift; exec dagster-webserver -w workspace.yaml -h 0.0.0.0 -p "${CFDB_DAGSTER_PORT:-3000}" "$@" ;;
  daemon)    shift; exec dagster-daemon run -w workspace.yaml "$@" ;;
  "")        echo "usage: api | webserver | daemon | <any command>" >&2; exit 64 ;;
  *)         exec "$@" ;;
esac
