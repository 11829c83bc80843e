# The README's commands: `make run` (main job, offline default), `make test` (the full suite), `make test-fast`
# (the development loop: no Snakemake run, no model training), `make lint` and `make format`.
# Each creates the virtual environment if missing and installs the project into it.
PYTHON ?= python3
VENV ?= .venv
CORES ?= 2
CONFIG ?= config/config.yaml
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-fast lint format setup clean

setup: $(STAMP)

# torch is pinned so pip takes the CPU wheel (an unpinned torch pulls gigabytes of CUDA).
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

# The run's name (results/<run_name>/), read once the environment exists.
RUN_NAME = $(shell $(BIN)/python -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["run_name"])' $(CONFIG))

# After the DAG, the same command writes the HTML report: every figure and table, the rule graph.
run: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/snakemake --cores $(CORES) --configfile $(CONFIG) --rerun-incomplete \
		--report results/$(RUN_NAME)/report.html --report-after-run

test: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m pytest -n $(CORES) --dist loadfile -q

test-fast: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m pytest -m "not slow and not dag" -n $(CORES) --dist loadfile -q

# Python (ruff: lint and format), the rule files (snakefmt) and the workflow (snakemake --lint, on the test config).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/snakefmt --check Snakefile workflow/rules
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/snakemake --lint --configfile config/test.yaml

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .
	$(BIN)/snakefmt Snakefile workflow/rules

clean:
	rm -rf results .snakemake
