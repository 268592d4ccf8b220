# Two entry points for a fresh machine: `make demo` and `make test`. Both set everything up.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build of torch, installed before anything that depends on torch, so that no range
# in pyproject.toml pulls a CUDA build. Elsewhere: TORCH_SPEC="torch --index-url <cpu index>".
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: setup demo test clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet $(TORCH_SPEC)
	$(BIN)/python -m pip install --quiet -e ".[export,dev]"
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(BIN)/ocr-deploy demo -o ocr-deploy-demo

test: setup
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -n 2

clean:
	rm -rf $(VENV) ocr-deploy-demo ocr-deploy-out .pytest_cache
