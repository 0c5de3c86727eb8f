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

$(BIN)/landform: pyproject.toml | $(FASHION_MNIST)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[tasks,dev]"
	# torchattacks declares torchvision, whose wheels pin another torch build; it never imports it, so it
	# is installed without its dependencies (the others are in the tasks extra) to keep torch==2.13.0 (CPU).
	$(BIN)/pip install -q --no-deps torchattacks==3.5.1
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
