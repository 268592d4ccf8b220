# Two entry points for a fresh machine: `make demo` and `make test`. Both set everything up.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build of torch, installed before anything that depends on torch, so that no range
# in pyproject.toml pulls a CUDA build. Elsewhere: TORCH_SPEC="torch --index-url <cpu index>".
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed
FIXTURES ?= ../shared/fixtures/hrnet_ocr_official

.PHONY: setup demo test clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH_SPEC)
	$(BIN)/python -m pip install --quiet -e ".[export,dev]"
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	mkdir -p out
	$(BIN)/ocr-deploy export $(FIXTURES)/w18s2_ocr256_k19_release.pth -o out/w18s2_ocr256_k19.onnx
	$(BIN)/ocr-deploy info out/w18s2_ocr256_k19.onnx

test: setup
	$(BIN)/python -m pytest -q -n 2

clean:
	rm -rf $(VENV) out .pytest_cache
