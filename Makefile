# unetlab: `make train` and `make test` do all set-up on a fresh machine (Python 3.10+ and make).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
ARGS ?=
# test processes (pytest-xdist; each takes a whole test file, so module fixtures run once).
# 3 on 2 cores: the suite waits on subprocesses, servers and locks, so one more process pays.
TEST_WORKERS ?= 3

.PHONY: install train test test-fast benchmark docs clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	# keras-hub for model.encoder=hub:PRESET, without tensorflow-text (and `tensorflow` with it: pyproject's extra hub)
	$(BIN)/python -m pip install --quiet --no-deps "keras-hub==0.32.0"
	touch $(STAMP)

train: $(STAMP)  ## train the default config (synthetic data) and log it to ./mlflow.db
	$(BIN)/python -m runner $(ARGS)

test: $(STAMP)  ## every test CI runs; ends with the 15 slowest, so a regression shows
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --durations=15 $(ARGS)

test-fast: $(STAMP)  ## skip the tests marked slow
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile -m "not slow" $(ARGS)

benchmark: $(STAMP)  ## training images/s: runner pipeline vs in-memory tensors
	$(BIN)/python experiments/benchmarks/train_throughput.py $(ARGS)

docs: $(VENV)/.docs-installed  ## the configuration reference up to date, then the site into site/ (a warning fails)
	$(BIN)/python -m runner.reference --check
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

$(VENV)/.docs-installed: $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[docs]"
	touch $@

clean:
	rm -rf $(VENV) outputs multirun mlruns mlflow.db .pytest_cache
