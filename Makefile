# scalpbot - the two Quickstart commands are `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
# The AWS template checkers get their own venv: they pin pydantic and boto3 versions that conflict with ours.
DEPLOY_VENV  ?= .venv-deploy
DEPLOY_BIN   := $(DEPLOY_VENV)/bin
DEPLOY_TOOLS := checkov==3.3.30 cfn-lint==1.58.0 aws-sam-translator==1.115.0
DEPLOY_STAMP := $(DEPLOY_VENV)/.installed-$(shell echo '$(DEPLOY_TOOLS)' | cksum | cut -d' ' -f1)

.PHONY: demo test fast lint typecheck template unit browser postgres bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# torch first, pinned: 2.13.0 is the CPU build; anything that pulls torch in later finds it satisfied.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $@

$(DEPLOY_STAMP):
	$(PYTHON) -m venv $(DEPLOY_VENV)
	echo '*' > $(DEPLOY_VENV)/.gitignore
	$(DEPLOY_BIN)/pip install --quiet --upgrade pip
	$(DEPLOY_BIN)/pip install --quiet $(DEPLOY_TOOLS)
	rm -f $(DEPLOY_VENV)/.installed-*
	touch $@

## demo: offline, on the bundled real BTC/USDT bars: import, train, paper-trade a week bar by bar, review
demo: $(STAMP)
	$(BIN)/scalpbot fetch --source sample
	$(BIN)/scalpbot data show
	$(BIN)/scalpbot train --trials 40
	$(BIN)/scalpbot replay --bot demo --release newest --from 2024-12-25T00:00:00Z --to 2025-01-01T00:00:00Z
	$(BIN)/scalpbot trades --bot demo
	$(BIN)/scalpbot monitor --bot demo --days 7

## test: lint, type-check, check the AWS template and run the test suite
test: lint typecheck template unit

## fast: the inner loop - every test but those marked slow (trained releases, PPO, Lambda, subprocesses)
fast: $(STAMP)
	$(BIN)/pytest -q -m "not slow" -n auto

lint: $(STAMP)
	$(BIN)/ruff check src tests bench deploy
	$(BIN)/ruff format --check src tests bench deploy

typecheck: $(STAMP)
	$(BIN)/mypy

## template: offline checks of deploy/aws/template.yaml (SAM translation, cfn-lint, checkov)
template: $(DEPLOY_STAMP)
	$(DEPLOY_BIN)/python deploy/aws/check_template.py

unit: $(STAMP) browser postgres
	$(BIN)/pytest -q -n auto --maxprocesses 4

## browser: Debian's headless Chromium and ChromeDriver for the page tests; installed when missing and allowed
browser:
	@if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null && command -v apt-get >/dev/null 2>&1; then \
		sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	else echo "chromium and chromium-driver are missing and cannot be installed here (not root, no sudo): the browser tests will skip"; fi

## postgres: Debian's PostgreSQL server (initdb, postgres) for the shared tuning study tests; installed when missing and allowed.
## Debian keeps the binaries in /usr/lib/postgresql/<version>/bin, off PATH: the tests look there (tests/support/postgres.py).
PG_BINS := $(shell ls -d /usr/lib/postgresql/*/bin 2>/dev/null) /usr/local/bin /usr/local/pgsql/bin
postgres:
	@if command -v initdb >/dev/null 2>&1 || (for d in $(PG_BINS); do [ -x "$$d/initdb" ] && [ -x "$$d/postgres" ] && exit 0; done; exit 1); then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; \
	elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null && command -v apt-get >/dev/null 2>&1; then \
		sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; \
	else echo "PostgreSQL's server binaries are missing and cannot be installed here (not root, no sudo): the shared study tests will skip"; fi

## bench: performance comparisons against peers (not tests)
bench: $(STAMP)
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	$(BIN)/python bench/dataset.py
	$(BIN)/python bench/backtest.py
	$(BIN)/python bench/backtest_overhead.py
	$(BIN)/python bench/policy_search.py
	$(BIN)/python bench/tuning_workers.py
	$(BIN)/python bench/portfolio.py
	$(BIN)/python bench/train.py
	$(BIN)/python bench/execute.py
	$(BIN)/python bench/rl.py
	$(BIN)/python bench/gate.py
	$(BIN)/python bench/lambda_cold_start.py

clean:
	rm -rf $(VENV) $(DEPLOY_VENV) build/aws .mypy_cache .pytest_cache .ruff_cache scalpbot-data
