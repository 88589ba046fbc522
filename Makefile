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

# All three checks run even when one fails, so one run reports everything; any failure fails the target.
# lint-imports checks the contracts in pyproject.toml's [tool.importlinter] (the architecture).
lint: $(STAMP)
	@status=0; \
	echo '$(BIN)/ruff check .'; $(BIN)/ruff check . || status=1; \
	echo '$(BIN)/ruff format --check .'; $(BIN)/ruff format --check . || status=1; \
	echo '$(BIN)/lint-imports --no-cache --no-logo'; $(BIN)/lint-imports --no-cache --no-logo || status=1; \
	exit $$status

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) tests/support/node_modules
