# Two entry points for a fresh machine: `make demo` (the main job) and `make test` (the suite).
# Each creates .venv and installs everything it needs, Debian packages included.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
FASHION_MNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz

.PHONY: demo test setup lint clean

$(FASHION_MNIST):
	@if [ "$$(id -u)" = 0 ]; then (apt-get update -qq || true) && apt-get install -y -qq dataset-fashion-mnist; \
	else sudo apt-get update -qq && sudo apt-get install -y -qq dataset-fashion-mnist; fi

# constraints.txt holds the exact versions; pyproject.toml asks only for ranges. torch==2.13.0 is installed
# first, on its own, so that it is the CPU build where the machine offers one (2.13.0+cpu); then the rest,
# torchattacks' torchvision==0.28.0 (the release built for torch 2.13.0) included. That torchvision is PyPI's
# CUDA build, whose compiled ops do not load beside the CPU torch: a plain `import torchvision` fails. torchattacks
# never imports it; deepinv does, through landform.integrations.deepinv, which declares the ops it needs first.
CONSTRAINTS := constraints.txt

$(BIN)/landform: pyproject.toml $(CONSTRAINTS) | $(FASHION_MNIST)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c $(CONSTRAINTS) torch
	$(BIN)/pip install -q -c $(CONSTRAINTS) -e ".[tasks,deepinv,dev]"
	@touch $@

setup: $(BIN)/landform

demo: setup
	$(BIN)/landform demo

# The suite on two cores (pytest-xdist: two workers, each takes the next tests as it finishes); every run ends
# with its 10 slowest tests (pyproject.toml). `pytest` alone runs it in one process.
test: setup
	$(BIN)/python -m pytest -q -n 2

lint: setup
	$(BIN)/ruff check landform tests benchmarks

clean:
	rm -rf $(VENV) report
