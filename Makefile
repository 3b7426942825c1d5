# Set-up is part of every target: each creates .venv (and installs the project) when it is missing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install train test lint bench

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev,transfer]"
	touch $(STAMP)

install: $(STAMP)

## The main job: train the CS231n default two-layer net on CIFAR-10.
train: $(STAMP)
	$(BIN)/cs231n fit --config configs/two_layer_default.yaml

## The test suite (CPU; CUDA tests are skipped without a GPU).
test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/cs231n bench
