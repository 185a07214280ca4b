# The two commands a new user needs:  `make serve`  and  `make test`.
PORT ?= 8000
HOST ?= 127.0.0.1

.PHONY: serve test lint bench models

serve:  ## install the service and serve the bundled models on $(HOST):$(PORT)
	scripts/setup.sh serve
	python3 -m service serve --host $(HOST) --port $(PORT)

test:  ## install everything (pip + Debian packages) and run every test, linters included
	scripts/setup.sh dev
	ruff check service export tests
	mypy
	python3 -m pytest

lint:
	ruff check service export tests
	ruff format --check service export tests
	mypy

bench:  ## the benchmark of issue 4 (see README, Benchmarks)
	python3 -m service bench

models:  ## rebuild the reference models in onnx_models/ (about 20 minutes on 2 cores)
	python3 -m export build-all
