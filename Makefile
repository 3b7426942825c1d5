# Set-up is part of every target: each creates .venv (and installs the project) when it is missing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install train test lint bench docs figures

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev,transfer,docs]"
	touch $(STAMP)

install: $(STAMP)

## The main job: train the CS231n default two-layer net on CIFAR-10.
train: $(STAMP)
	$(BIN)/cs231n fit --config configs/two_layer_default.yaml

## The test suite (CPU; CUDA tests are skipped without a GPU) in PYTEST_WORKERS processes (pytest-xdist;
## default 2, one per core here), each on one thread unless OMP_NUM_THREADS says otherwise: the tensors are
## small, so a second thread only adds overhead where a second process halves the time.
PYTEST_WORKERS ?= 2
test: $(STAMP)
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(BIN)/python -m pytest -n $(PYTEST_WORKERS)

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/cs231n bench

## The documentation site (docs/_build/html): warnings are errors, the walk-throughs of examples/ run
## (on one thread unless OMP_NUM_THREADS says otherwise: their tensors are small, and more threads only spin).
docs: $(STAMP)
	cd docs && OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(abspath $(BIN))/sphinx-build -W --keep-going -b html . _build/html
	$(BIN)/python docs/check_site.py docs/_build/html

## Re-run the commands behind docs/figures (about 30 min; needs ../shared/data/cifar10_train.npz), then `make docs`.
figures: $(STAMP)
	$(BIN)/cs231n summary --config configs/conv_net.yaml --out docs/figures
	$(BIN)/cs231n experiment activations --out docs/figures
	$(BIN)/cs231n experiment init-scale --out docs/figures
	$(BIN)/cs231n experiment optimizers --out docs/figures
	$(BIN)/cs231n experiment batchnorm --out docs/figures
	$(BIN)/cs231n experiment dropout --out docs/figures
	$(BIN)/cs231n gradcheck --out docs/figures
	$(BIN)/cs231n tune --config configs/two_layer_default.yaml --search configs/search/two_layer.yaml \
	    --n-trials 20 --sampler-seed 0 --trainer.max_epochs 5 --trainer.enable_progress_bar false
	cp lightning_logs/tune/two_layer/history.png docs/figures/tune_history.png
	cp lightning_logs/tune/two_layer/importances.png docs/figures/tune_importances.png
