# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CONFIG ?= deploy/aiwall.yaml

.PHONY: install run test test-slow lint e2e clean

$(BIN)/aiwall: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(BIN)/aiwall

# The hot path's modules compiled again from the source as it is now (setup.py; the
# install compiles them once). Until then, an edited module and every other listed
# one run from source: resolver/compiled.py.
.PHONY: compile
compile: install
	$(BIN)/pip install --quiet --no-deps -e .

run: install
	$(BIN)/aiwall serve --config $(CONFIG)

# The default run (~6 minutes on 2 cores): everything but the slow tool runs and e2e.
# HYPOTHESIS_PROFILE=ci: property tests with the same examples every run (tests/conftest.py).
# Then the unit tests once more with every module from source (AIWALL_PURE=1): what runs
# where no C compiler was at hand; and the tests that inject faults by replacing methods,
# which compiled code never calls.
test: install
	tests/tools/install-system-deps.sh
	HYPOTHESIS_PROFILE=ci $(BIN)/python -m pytest
	AIWALL_PURE=1 HYPOTHESIS_PROFILE=ci $(BIN)/python -m pytest tests/unit \
		tests/integration/test_pending_answers.py

# The slow tool runs (tests marked slow: benchmark, soak and fuzz smoke runs, the
# Prometheus dashboard check); CI runs them after `make test` (.ci/run).
test-slow: install
	tests/tools/install-system-deps.sh
	HYPOTHESIS_PROFILE=ci $(BIN)/python -m pytest -m 'slow and not e2e'

lint: install
	$(BIN)/ruff check resolver tests bench
	$(BIN)/ruff format --check resolver tests bench
	$(BIN)/mypy
	$(BIN)/aiwall catalog lint

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

# The benchmark against dnsmasq and Unbound (bench/README.md). Takes ~15 minutes;
# extra options through BENCH_ARGS, e.g. make bench BENCH_ARGS="--rounds 5".
BENCH_ARGS ?=
.PHONY: bench bench-smoke
bench: install
	$(BIN)/pip install --quiet matplotlib
	$(BIN)/python bench/run.py $(BENCH_ARGS)

# Instructions per query over a fixed replay, counted by valgrind (bench/instructions.py):
# compared with bench/instructions.json (CI: tests/integration/test_instruction_guard.py),
# or written to it when a change makes the hot path dearer on purpose.
.PHONY: instructions instructions-baseline
instructions: install
	tests/tools/install-system-deps.sh
	$(BIN)/python bench/instructions.py

instructions-baseline: install
	tests/tools/install-system-deps.sh
	$(BIN)/python bench/instructions.py --update

# A few seconds per server: checks the harness, not the speed.
bench-smoke: install
	$(BIN)/pip install --quiet matplotlib
	$(BIN)/python bench/run.py --smoke --output-dir bench/results/smoke $(BENCH_ARGS)

# Deployment checks (deploy/README.md). The CI-sized ones also run in CI:
# tests/integration/test_deploy_files.py in `make test`, tests/e2e/test_dashboard_queries.py
# in `make test-slow`.
.PHONY: e2e-prometheus e2e-container dashboard-preview
# Prometheus scraping a real aiwall: every dashboard query returns data (~20 s).
e2e-prometheus: install
	tests/tools/install-system-deps.sh
	$(BIN)/python -m pytest -p no:cacheprovider -m slow tests/e2e/test_dashboard_queries.py
# Builds deploy/Dockerfile with podman and runs the image (minutes on a first run; root).
e2e-container: install
	tests/e2e/install-podman.sh
	$(BIN)/python -m pytest -p no:cacheprovider -m e2e -s tests/e2e/test_container.py
# Every end-to-end test, the opt-in ones included.
e2e: e2e-prometheus e2e-container
# Redraws deploy/grafana/preview.png from 2.5 minutes of traffic.
dashboard-preview: install
	$(BIN)/python -m tests.e2e.dashboard --output deploy/grafana/preview.png

# Hostile input and overload against a real server on loopback (docs: "Security and
# reliability"). Short versions run in `make test-slow`: tests/integration/test_fuzz_smoke.py
# and tests/integration/test_soak_smoke.py. Extra options through FUZZ_ARGS / SOAK_ARGS.
FUZZ_ARGS ?=
SOAK_ARGS ?=
.PHONY: fuzz soak
# 100,000 random, cut and mutated packets over UDP and TCP; then checks the answers and
# that memory stayed flat (~5 minutes).
fuzz: install
	$(BIN)/python tests/tools/fuzz.py $(FUZZ_ARGS)
# 3 minutes at twice the measured capacity (dnsperf if installed, else a Python load
# generator); checks that answers never stop, recovery is immediate and memory flat.
soak: install
	$(BIN)/python tests/tools/soak.py $(SOAK_ARGS)
