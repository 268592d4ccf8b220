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
	# Type stubs of TensorRT for the static check; --no-deps: their metadata pins tensorrt 10.13,
	# whose libraries download from NVIDIA's own index only (and are not needed to type-check).
	$(BIN)/python -m pip install --quiet --no-deps "tensorrt-stubs==10.13.0.35.1"
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(BIN)/ocr-deploy demo -o ocr-deploy-demo

test: setup
	$(BIN)/ruff check .
	# The GPU modules against tensorrt-stubs and typings/ ([tool.basedpyright] in pyproject.toml).
	$(BIN)/basedpyright
	$(BIN)/python -m pytest -q -n 2

clean:
	rm -rf $(VENV) ocr-deploy-demo ocr-deploy-out .pytest_cache
