PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The lock files (`make lock` writes them; never edit by hand): LOCK is what the image runs,
# DEV_LOCK the same pins plus the dev extra. Every install is hash-checked against them.
LOCK := requirements.txt
DEV_LOCK := requirements-dev.txt

.PHONY: install run test test-fast lint bench clean lock

# The locked versions, then this project alone (--no-deps: nothing is resolved at install time;
# --no-build-isolation: it is built with the locked setuptools, nothing unpinned is downloaded).
# Only the installer is not locked: a current pip installs the lock in about half the time of
# Python 3.11's bundled one, and what it installs is the same (hash-checked) either way.
$(STAMP): pyproject.toml $(DEV_LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --require-hashes -r $(DEV_LOCK)
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

install: $(STAMP)

tests/support/node_modules/.package-lock.json: tests/support/package-lock.json
	cd tests/support && npm ci --no-audit --no-fund --loglevel=error

run: $(STAMP)
	$(BIN)/python scripts/dev.py

# The suite on both cores (pytest-xdist; four workers, as most tests wait on processes rather than
# compute: 302 s against 402 s with two on this 2-core box): each worker process takes whole files (--dist loadfile,
# so a file's tests share its stacks) and starts its own redis-server and shared stack.
# XDIST="-n 0" runs it in one process.
XDIST ?= -n 4 --dist loadfile
test: $(STAMP) tests/support/node_modules/.package-lock.json
	$(BIN)/python -m pytest -q $(XDIST) $(PYTEST_ARGS)

# Only the in-process unit tests (tests/unit/): no Redis, no processes, a few seconds.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q tests/unit $(PYTEST_ARGS)

# All four checks run even when one fails, so one run reports everything; any failure fails the target.
# lint-imports checks the contracts in pyproject.toml's [tool.importlinter] (the architecture);
# mypy type-checks backend/, workers/ and config/ strictly ([tool.mypy]); promtool (Debian's
# prometheus package, .ci/run installs it) the alert rules in deploy/prometheus.
lint: $(STAMP)
	@status=0; \
	echo '$(BIN)/ruff check .'; $(BIN)/ruff check . || status=1; \
	echo '$(BIN)/ruff format --check .'; $(BIN)/ruff format --check . || status=1; \
	echo '$(BIN)/lint-imports --no-cache --no-logo'; $(BIN)/lint-imports --no-cache --no-logo || status=1; \
	echo '$(BIN)/mypy'; $(BIN)/mypy || status=1; \
	echo 'promtool check rules deploy/prometheus/rules.yml'; \
	if command -v promtool >/dev/null; then promtool check rules deploy/prometheus/rules.yml || status=1; \
	else echo 'promtool not found: apt-get install -y prometheus'; status=1; fi; \
	exit $$status

bench: $(STAMP)
	$(BIN)/python -m bench

# Rewrites both lock files from pyproject.toml with uv (a dev dependency), for every platform and
# Python >= 3.11, with the hashes of every file. A pin that still fits is kept; LOCK_ARGS=--upgrade
# moves every pin to the newest allowed version (LOCK_ARGS="--upgrade-package NAME" one of them).
# The dev lock is resolved first and the runtime one within it, so both pin the same versions.
# [build-system] requires is locked too (the installs build this project without isolation).
BUILD_REQUIRES = $(BIN)/python -c 'import tomllib; print(*tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"], sep="\n")'
UV_COMPILE = $(BIN)/uv pip compile --quiet --universal --python-version 3.11 --generate-hashes \
	--custom-compile-command "make lock" $(LOCK_ARGS)

lock: $(STAMP)
	$(BUILD_REQUIRES) | $(UV_COMPILE) pyproject.toml - --extra dev -o $(DEV_LOCK)
	$(BUILD_REQUIRES) | $(UV_COMPILE) pyproject.toml - --constraint $(DEV_LOCK) -o $(LOCK)

clean:
	rm -rf $(VENV) tests/support/node_modules
