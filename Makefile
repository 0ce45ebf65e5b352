# The two commands of the README: `make run` (the service on the embedded defaults) and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PY := .venv/bin/python

.PHONY: help setup run test demo lint

help:
	@echo "make run   - install what is needed, then start the API (:8000), Dagster UI (:3000) and daemon on the demo catalog"
	@echo "make test  - install what is needed, then run the whole test suite"

setup:
	@scripts/setup.sh

run: setup
	@scripts/run.sh

# `test` also installs podman, runc and mmdebstrap for the container image tests (tests/deploy).
test:
	@scripts/setup.sh test
	@scripts/test.sh

lint: setup
	@.venv/bin/ruff check cfdb_assets resources serve tests bench
