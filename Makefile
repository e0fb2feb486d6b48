# Two commands for a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_STATE ?= $(CURDIR)/demo-state

.PHONY: demo test lint typecheck check bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed-test: $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e .
	touch $@

# The demo also needs Radicale (the `demo` extra) for its embedded CalDAV server.
$(VENV)/.installed-demo: $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e '.[demo]'
	touch $@

# make demo [DEMO_STATE=DIR] [DEMO_ONCE=1 | ARGS=--once]
demo: $(VENV)/.installed-demo
	SYNCD_DATABASE_URL= SYNCD_CONFIG= DEMO_ONCE=$(DEMO_ONCE) \
		$(BIN)/python -m syncd.demo --state '$(DEMO_STATE)' $(ARGS)

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest

lint: $(VENV)/.installed-test
	$(BIN)/ruff check syncd connectors tests bench
	$(BIN)/ruff format --check syncd connectors tests bench

typecheck: $(VENV)/.installed-test
	$(BIN)/mypy

check: lint typecheck test

bench: $(VENV)/.installed-test
	$(BIN)/python bench/slots.py
	$(BIN)/python bench/booking.py

clean:
	rm -rf $(VENV) $(DEMO_STATE) .pytest_cache .mypy_cache .ruff_cache
