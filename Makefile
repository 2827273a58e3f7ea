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

.PHONY: install test test-fast lint typecheck demo bench fuzz load postgres chromium clean

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

# Markers (pyproject.toml): `make test` runs every test except the long fuzz and load runs, i.e.
# the unit tests, `slow` (real Ray and sweeps), `browser`, `faults` (kills, outages, node loss)
# and `fuzz` (a short schemathesis pass); `make fuzz` and `make load` run the long ones.
test: $(STAMP) postgres chromium lint
	$(VENV)/bin/pytest -m "not fuzz_long and not load" --durations=40 --durations-min=10

test-fast: $(STAMP)
	$(VENV)/bin/pytest -m "not slow and not browser and not faults and not fuzz and not fuzz_long and not load"

# At least 2,000 schemathesis requests against a live server (tests/fuzz).
fuzz: $(STAMP) postgres
	$(VENV)/bin/pytest -m fuzz_long tests/fuzz

# 1,000 idempotent submissions by 20 retrying clients; 200 pollers on a running sweep.
load: $(STAMP) postgres
	$(VENV)/bin/pytest -m load tests/service/server/test_load.py

demo: $(STAMP)
	bash examples/demo.sh

# Figures as JSON, ratios against a baseline measured in the same run; never a pass/fail.
# About 35 minutes on 2 cores (sweep_efficiency alone ~25): run it on a quiet machine.
# Each JSON goes to benchmarks/results/<name>.json (benchmarks/README.md says what it measures).
BENCH_RESULTS ?= benchmarks/results
BENCHMARKS := optimizer_step ddp_communication api_latency epoch_overhead trial_startup \
	sweep_efficiency
bench: $(STAMP)
	@mkdir -p $(BENCH_RESULTS)
	@failed=""; for name in $(BENCHMARKS); do \
		echo "benchmarks/$$name.py -> $(BENCH_RESULTS)/$$name.json" >&2; \
		$(PY) benchmarks/$$name.py >$(BENCH_RESULTS)/$$name.json || failed="$$failed $$name"; \
	done; \
	if [ -n "$$failed" ]; then echo "could not measure:$$failed" >&2; exit 1; fi
	@echo "the GPU check runs where there is a GPU: bash benchmarks/gpu_check.sh" >&2

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
