# Every target creates .venv on first use and installs the project into it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/sigma-load demo

test: $(STAMP)
	$(BIN)/ruff check sigma_source tests benchmarks pipelines
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check sigma_source tests benchmarks pipelines
	$(BIN)/ruff format --check sigma_source tests benchmarks pipelines

bench: $(STAMP)
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache target *.duckdb
