# Common tasks. `make demo` and `make test` work on a fresh machine: they build the
# virtualenv and fetch the Kafka jars on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# One virtualenv per job framework, holding only that framework's extra (+ the test runner),
# at the newest versions the registry serves when it is built: see `frameworks` below.
FRAMEWORKS := celery rq arq dramatiq
FW_VENVS := .venvs
FW_STAMPS := $(foreach f,$(FRAMEWORKS),$(FW_VENVS)/$(f)/.installed)

.PHONY: compose-env demo test test-cluster test-fast test-faults test-frameworks frameworks lint fmt kafka \
	system-deps bench up up-cluster down clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# setuptools warns on every editable install that local folders may shadow the package:
	# the repository root *is* the package here, so the warning says nothing new.
	PYTHONWARNINGS="ignore:Editable installation" $(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

# uv (pinned in the dev extra) builds each in seconds; the stamp follows pyproject.toml.
$(FW_VENVS)/%/.installed: pyproject.toml $(STAMP)
	rm -rf $(FW_VENVS)/$*
	UV_PYTHON_DOWNLOADS=never $(BIN)/uv venv -q --python $(PY) $(FW_VENVS)/$*
	$(BIN)/uv pip install -q --python $(FW_VENVS)/$*/bin/python -e '.[$*,testing]'
	touch $@

frameworks: $(FW_STAMPS)

# Debian packages the local stack needs: Java 17 + Maven (Kafka jars), Redis (job frameworks),
# Chromium (the dashboard's browser tests drive /usr/bin/chromium with Playwright).
system-deps:
	@missing=""; \
	command -v java >/dev/null || missing="$$missing openjdk-17-jre-headless"; \
	test -x /usr/bin/chromium || missing="$$missing chromium"; \
	command -v mvn >/dev/null || missing="$$missing maven"; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

kafka: $(STAMP) system-deps
	$(BIN)/python -m tally.embedded.kafka_broker install

demo: $(STAMP) kafka
	$(BIN)/python -m tally.loadtest.demo

# Two workers, one test file each at a time: the suites mostly wait on real services. The
# longest files go first (tests/conftest.py); --no-loadscope-reorder keeps that order.
test: $(STAMP) kafka frameworks
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -n 2 --dist loadfile --no-loadscope-reorder
	$(MAKE) --no-print-directory test-frameworks

# The 3-broker Kafka cluster tests (kill -9 of a leader, of a broker and an aggregator, a
# rolling restart; `tally up --kafka-brokers 3`): one cluster per file, so one worker. `make
# test` runs them too (they start first, beside the rest); this target runs them alone.
test-cluster: $(STAMP) kafka
	$(BIN)/python -m pytest -m cluster -p no:cacheprovider

# Each framework's hook tests, in the environment that has only that framework installed.
test-frameworks: frameworks system-deps
	@set -e; for f in $(FRAMEWORKS); do \
	  echo "== $$f ($(FW_VENVS)/$$f)"; \
	  TALLY_FRAMEWORK=$$f $(FW_VENVS)/$$f/bin/python -m pytest -q -p no:cacheprovider \
	    tests/frameworks/test_$$f.py; \
	done

test-fast: $(STAMP)
	$(BIN)/python -m pytest tests/unit

test-faults: $(STAMP) kafka
	$(BIN)/python -m pytest -m faults

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

fmt: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: $(STAMP) kafka
	$(BIN)/python -m tally.loadtest.cli run --scenario mixed

# The secrets docker-compose.yml requires, random, into .env (0600); an existing .env is kept.
COMPOSE_SECRETS := TALLY_CLICKHOUSE_PASSWORD TALLY_AGGREGATOR_CLICKHOUSE_PASSWORD \
	TALLY_TRACES_CLICKHOUSE_PASSWORD TALLY_MONITORS_CLICKHOUSE_PASSWORD \
	TALLY_API_CLICKHOUSE_PASSWORD TALLY_SQL_CLICKHOUSE_PASSWORD TALLY_API_TOKEN TALLY_API_SQL_TOKEN

compose-env:
	@test -e .env || (umask 077 && for name in $(COMPOSE_SECRETS); do \
		echo "$$name=$$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')"; \
	done > .env && echo "wrote .env")

up: compose-env
	docker compose up -d --build

# ClickHouse as two replicas of one shard with Keeper (docs/cluster.md).
CLUSTER_COMPOSE := -f docker-compose.yml -f docker-compose.cluster.yml

up-cluster: compose-env
	docker compose $(CLUSTER_COMPOSE) up -d --build

down:
	docker compose $(CLUSTER_COMPOSE) down -v

clean:
	rm -rf $(VENV) $(FW_VENVS) .tally build *.egg-info
