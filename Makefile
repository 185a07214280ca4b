# The two commands a new user needs:  `make serve`  and  `make test`.
PORT ?= 8000
HOST ?= 127.0.0.1
# Every command runs in one virtual environment, which scripts/setup.sh makes: $(VENV) when
# given, else the active one ($VIRTUAL_ENV), else .venv here. Never the system's Python.
VENV ?= $(if $(VIRTUAL_ENV),$(VIRTUAL_ENV),$(CURDIR)/.venv)
PY := $(VENV)/bin/python
export VENV

.PHONY: serve test lint bench models usage-session

serve:  ## install the service into the virtual environment and serve the bundled models on $(HOST):$(PORT)
	scripts/setup.sh serve
	$(PY) -m service serve --host $(HOST) --port $(PORT)

test:  ## install everything (pip + Debian packages) and run every test, linters included
	scripts/setup.sh dev
	$(PY) -m ruff check service export tools tests
	$(PY) -m mypy
	$(PY) -m pytest

lint:
	$(PY) -m ruff check service export tools tests
	$(PY) -m ruff format --check service export tools tests
	$(PY) -m mypy

bench:  ## the benchmark of issue 4 (see README, Benchmarks)
	$(PY) -m service bench

models:  ## rebuild the reference models in onnx_models/ (about 15 minutes on 2 cores)
	$(PY) -m export build-all

usage-session:  ## re-record docs/usage-session.md against the committed models (about a minute)
	PATH="$(VENV)/bin:$$PATH" scripts/usage-session.sh
