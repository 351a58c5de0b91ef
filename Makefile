# One command runs the whole system (`make up`), one runs every test (`make test`).
SHELL := /bin/bash
.DEFAULT_GOAL := help

UV_VERSION := 0.13.9
TOOLS := var/tools
UV := $(TOOLS)/bin/uv
BIN := .venv/bin
SERVICES := customer account order orchestrator

.PHONY: help venv up up-bg down status lint test test-unit test-e2e migrations-check check-deploy bench-outbox bench-saga \
	k8s-validate docker-check load simulate chaos

help:
	@echo "make up        set up and run every process; gateway on http://127.0.0.1:8000 (Ctrl-C stops)"
	@echo "make up-bg     the same, in the background; 'make down' stops it"
	@echo "make status    show the processes of a running stack"
	@echo "make test      lint, type-check, unit and end-to-end tests (real PostgreSQL, Redis, Celery, Envoy)"
	@echo "make bench-outbox  relay drain rate and commit-to-publish latency (prints JSON last)"
	@echo "make bench-saga    checkouts/s and latency at rising load, with a plot (prints JSON last)"
	@echo "GATEWAY=nginx make up   the same system with Nginx instead of Envoy as the gateway"
	@echo "make docker-check  check docker-compose.yml, the Dockerfile and the gateway configs (no Docker engine needed)"
	@echo "make k8s-validate  build the Kubernetes overlays and validate them offline"
	@echo "make load          mixed load on the running gateway with locust (LOAD_USERS, LOAD_SECONDS)"
	@echo "make simulate      seeded runs of the whole message system, audited (RUNS, FIRST_SEED; SEED=n replays one)"
	@echo "make chaos         own stack on private PostgreSQL/Redis, faults while clients shop, Outcomes audited (CHAOS_CHECKOUTS, CHAOS_SECONDS, CHAOS_SEED)"

# uv itself is installed into a private virtualenv, pinned, so a fresh machine needs only python3.
$(UV):
	python3 -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

# The project's virtualenv, installed exactly from uv.lock.
$(BIN)/.synced: $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen
	@touch $@

venv: $(BIN)/.synced

up: venv
	$(BIN)/python -m deploy.local.stack up

up-bg: venv
	$(BIN)/python -m deploy.local.stack up --detach

down:
	@if [ -x $(BIN)/python ]; then $(BIN)/python -m deploy.local.stack down; fi

status: venv
	$(BIN)/python -m deploy.local.stack status

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .

migrations-check: venv
	@for s in $(SERVICES); do \
		CAFE_ENV=development $(BIN)/python -W ignore::RuntimeWarning manage.py makemigrations --check --dry-run --settings=$$s.settings >/dev/null \
			|| { echo "missing migrations in $$s"; exit 1; }; \
	done

# Every service's settings in a production-like environment (nothing but what production must
# give: a random SECRET_KEY, passwords in the database and Redis URLs; no CAFE_ENV): Django's
# deployment checklist must find nothing, and the settings must not refuse to start.
check-deploy: venv
	@for s in $(SERVICES); do \
		S=$$(echo $$s | tr a-z A-Z); \
		env -i PATH="$$PATH" HOME="$$HOME" ENV_FILE=/nonexistent \
			SECRET_KEY=$$($(BIN)/python -c 'import secrets; print(secrets.token_urlsafe(50))') \
			$${S}_DATABASE_URL=postgres://$$s:deploy-check-$$RANDOM$$RANDOM@db.invalid:5432/$$s \
			REDIS_URL=redis://:deploy-check-$$RANDOM$$RANDOM@redis.invalid:6379/0 \
			$(BIN)/python manage.py check --deploy --fail-level WARNING --settings=$$s.settings \
			|| { echo "check --deploy failed for $$s"; exit 1; }; \
	done

# Each service's own tests run under its own settings and test database.
test-unit: venv
	@for s in $(SERVICES); do \
		echo "== $$s"; $(BIN)/pytest $$s --ds=$$s.settings -q || exit 1; \
	done
	@echo "== common"; $(BIN)/pytest common --ds=account.settings -q

# Starts a private stack (its own ports, databases and Redis db) with every real process.
test-e2e: venv
	$(BIN)/pytest tests -p no:django -q

test: lint migrations-check check-deploy test-unit test-e2e

# The deterministic simulator (tests/sim): every service's real code on its own simulation
# database, with a seeded scheduler in place of Redis and Celery. SEED=n replays one run.
RUNS ?= 200
FIRST_SEED ?= 1
simulate: venv
	$(BIN)/python -m tests.sim $(if $(SEED),--seed $(SEED),--runs $(RUNS) --first-seed $(FIRST_SEED)) $(SIM_ARGS)

# Its own stack on private PostgreSQL and Redis (CHAOS_PORT_BASE, default 47000…49002), clients
# through the gateway while processes are killed and paused and the servers restarted; exits 1
# on any violated Outcome. CHAOS_CHECKOUTS, CHAOS_SECONDS, CHAOS_SEED (see README, "Chaos").
chaos: venv
	$(BIN)/python -m tests.chaos $(CHAOS_ARGS)

bench-saga: venv
	$(BIN)/python -m tests.bench.saga

bench-outbox: venv
	$(BIN)/python -m tests.bench.outbox

docker-check: venv
	PATH="$(CURDIR)/$(BIN):$$PATH" deploy/docker/validate.sh

k8s-validate: venv
	PATH="$(CURDIR)/$(BIN):$$PATH" deploy/k8s/validate.sh

LOAD_USERS ?= 20
LOAD_SECONDS ?= 30
LOAD_URL ?= http://127.0.0.1:8000

# Starts the stack in the background if it is not running, then prints requests/s and percentiles.
load: up-bg
	$(BIN)/locust -f tests/load/locustfile.py --headless --users $(LOAD_USERS) --spawn-rate 10 \
		--run-time $(LOAD_SECONDS)s --host $(LOAD_URL) --only-summary --stop-timeout 5
