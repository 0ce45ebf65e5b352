#!/usr/bin/env bash
# Install everything cfdb-assets needs on a fresh Debian machine (run as root, or with sudo):
# the bioinformatics tools from Debian, and a virtualenv with the pinned Python packages.
# Idempotent: a second run only checks.
# `scripts/setup.sh test` (what `make test` runs) also installs the container tools the image tests
# (tests/deploy) need, as root: podman with runc, and mmdebstrap to make the Debian base without a
# registry (reference: shared/reference/containers.md); and Debian's chromium, the headless browser
# of the viewer tests (tests/e2e/test_viewer.py, through tests/cdp.py).
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
for tool in samtools:samtools bgzip:tabix tabix:tabix gffread:gffread node:nodejs; do
  command -v "${tool%%:*}" >/dev/null 2>&1 || need_apt+=("${tool##*:}")
done
python3 -c 'import venv, ensurepip' 2>/dev/null || need_apt+=(python3-venv)
if [ "${1:-}" = test ]; then
  for tool in podman:podman runc:runc mmdebstrap:mmdebstrap chromium:chromium; do
    command -v "${tool%%:*}" >/dev/null 2>&1 || need_apt+=("${tool##*:}")
  done
fi
if ((${#need_apt[@]})); then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "setup: installing Debian packages: ${need_apt[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

stamp=.venv/.installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ constraints.txt -nt "$stamp" ]; then
  [ -x .venv/bin/python ] || python3 -m venv .venv
  echo "setup: installing Python packages into .venv"
  .venv/bin/pip install -q --upgrade pip >/dev/null
  .venv/bin/pip install -q -c constraints.txt -e '.[test]'
  touch "$stamp"
fi

need_npm() {
  command -v npm >/dev/null 2>&1 || { SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"; $SUDO apt-get install -y -qq npm >/dev/null; }
}

# The JavaScript readers Gosling pins, for the HTTP contract tests (tests/js).
if [ ! -d tests/js/node_modules ] || [ tests/js/package-lock.json -nt tests/js/node_modules ]; then
  need_npm
  echo "setup: installing the JavaScript test clients (tests/js)"
  (cd tests/js && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  touch tests/js/node_modules
fi

# The viewer's browser libraries (GET /view): Gosling 1.0.7 and its peers at the versions
# viewer/package-lock.json pins, bundled by viewer/build.mjs into serve/static/vendor/ (git-ignored;
# the image copies it with serve/). --ignore-scripts: gosling.js 1.0.7 publishes a preinstall hook
# (`npx only-allow pnpm`) that fails under npm, and no package here needs an install script.
bundle=serve/static/vendor/gosling.js
if [ ! -f "$bundle" ] || [ viewer/package-lock.json -nt "$bundle" ] || [ viewer/build.mjs -nt "$bundle" ] \
   || [ viewer/entry.js -nt "$bundle" ]; then
  need_npm
  echo "setup: bundling the viewer's JavaScript libraries (viewer/ -> serve/static/vendor/)"
  (cd viewer && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null && node build.mjs >/dev/null)
fi
