# extrap-tune: `make test` and `make demo` work from a fresh clone on a fresh machine.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# torch first, pinned to the CPU wheel that lies on these machines' disk: any other torch spec
# pulls a multi-GB CUDA build. Clusters bring their own build (the project allows >=2.11).
TORCH_SPEC ?= torch==2.13.0
export RAY_AUTH_MODE ?= disabled
export RAY_USAGE_STATS_ENABLED ?= 0

.PHONY: install test test-fast lint typecheck demo bench postgres chromium clean

$(PY):
	python3 -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install $(TORCH_SPEC)
	$(PY) -m pip install -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports --no-cache

typecheck: $(STAMP)
	$(VENV)/bin/mypy

# PostgreSQL backs the persistence tests; start it where it is installed but not running.
postgres:
	@if command -v pg_isready >/dev/null && ! pg_isready -q -h 127.0.0.1; then \
		pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql | head -n1) main start; \
	fi

# Headless Chromium and its driver for the browser tests (Debian packages; needs root).
chromium:
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium chromium-driver; \
	fi

test: $(STAMP) postgres chromium lint
	$(VENV)/bin/pytest

test-fast: $(STAMP)
	$(VENV)/bin/pytest -m "not slow and not browser"

demo: $(STAMP)
	bash examples/demo.sh

# Figures as JSON, ratios against a baseline measured in the same run; never a pass/fail.
bench: $(STAMP)
	$(PY) benchmarks/optimizer_step.py
	$(PY) benchmarks/ddp_communication.py
	$(PY) benchmarks/api_latency.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
