# Common tasks. `make demo` and `make test` work on a fresh machine: they build the
# virtualenv and fetch the Kafka jars on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast test-faults lint fmt kafka bench up down clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

kafka: $(STAMP)
	$(BIN)/python -m tally.embedded.kafka_broker install

demo: $(STAMP) kafka
	$(BIN)/python -m tally.loadtest.demo

test: $(STAMP) kafka
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

test-fast: $(STAMP)
	$(BIN)/python -m pytest tests/unit

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

fmt: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: $(STAMP) kafka
	$(BIN)/python -m tally.loadtest.cli run --scenario mixed

up:
	docker compose up -d --build

down:
	docker compose down -v

clean:
	rm -rf $(VENV) .tally build *.egg-info
