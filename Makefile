PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

tests/support/node_modules/.package-lock.json: tests/support/package-lock.json
	cd tests/support && npm ci --no-audit --no-fund --loglevel=error

run: $(STAMP)
	$(BIN)/python scripts/dev.py

test: $(STAMP) tests/support/node_modules/.package-lock.json
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) tests/support/node_modules
