# crs_ml: every target creates .venv from the committed lock file when it is missing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export PATH := $(abspath $(BIN)):$(PATH)
export MPLBACKEND := Agg

.PHONY: help install demo test test-spark lint ui serve bench readme clean

help:
	@echo "make demo | test | test-spark | lint | ui | serve | bench | clean"

$(STAMP): requirements.lock pyproject.toml
	@test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m crs_ml.cli.demo

test: $(STAMP)
	$(BIN)/python -m pytest -q -m "not spark" -p no:cacheprovider

test-spark: $(STAMP)
	$(BIN)/python -m pip install --quiet -r requirements-spark.lock
	$(BIN)/python -m pytest -q -m spark -p no:cacheprovider

lint: $(STAMP)
	$(BIN)/ruff check crs_ml tests benchmarks
	$(BIN)/ruff format --check crs_ml tests benchmarks

ui: $(STAMP)
	$(BIN)/mlflow ui --backend-store-uri "$${MLFLOW_TRACKING_URI:-sqlite:///mlflow.db}" --host 127.0.0.1 --port 5000

serve: $(STAMP)
	$(BIN)/crs-ml serve

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

readme: $(STAMP)
	$(BIN)/python -m crs_ml.features.catalogue --update README.md

clean:
	rm -rf $(VENV) .pytest_cache
