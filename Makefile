# Two entry points on a fresh machine: `make demo` and `make test` (see README.md).
# Both create .venv if missing and install only what is missing (stamp files track what is done).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH_PINS := torch==2.14.1 torchvision==0.29.1 triton==3.8.0
CORE_STAMP := $(VENV)/.attnzoo-core
MM_STAMP := $(VENV)/.attnzoo-openmmlab
PYTEST_ARGS ?=

.PHONY: demo test test-all lint install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(CORE_STAMP): pyproject.toml Makefile | $(BIN)/python
	$(BIN)/python -m pip install -q $(TORCH_PINS)
	$(BIN)/python -m pip install -q -e ".[dev,onnx,hf]"
	touch $@

$(MM_STAMP): $(CORE_STAMP) tools/install_openmmlab.sh
	bash tools/install_openmmlab.sh $(BIN)/python
	touch $@

install: $(CORE_STAMP)

demo: $(CORE_STAMP)
	$(BIN)/attnzoo bench

lint: $(CORE_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# pytest exits 5 when it collected no tests: that is a broken suite, reported as such.
test: $(MM_STAMP) lint
	$(BIN)/python -m pytest -q -ra $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests" >&2; fi; exit $$rc

# Both tiers: also every variant through the costly battery checks (pytest's `slow` marker).
test-all:
	$(MAKE) test PYTEST_ARGS="-m 'slow or not slow'"

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache
