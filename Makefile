# Dataset Publisher. `make run` for the embedded mode, `make test` for the test suite.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000
# The services the test suite uses (PostgreSQL, Redis on localhost; an S3 server on
# loopback is started by the tests themselves).
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/dataset_publisher
TEST_REDIS_URL ?= redis://127.0.0.1:6379/13

.PHONY: install run worker migrate demo test test-only test-embedded lint format check-deploy bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.installed: $(PY) pyproject.toml
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

install: $(VENV)/.installed

migrate: install
	DEBUG=true $(PY) manage.py migrate --noinput

demo: migrate
	DEBUG=true $(PY) manage.py demo

run: demo
	DEBUG=true HOST=$(HOST) PORT=$(PORT) $(PY) scripts/run_embedded.py

worker: install
	$(VENV)/bin/celery -A config worker --beat --loglevel INFO --concurrency 2

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	DEBUG=true $(PY) manage.py makemigrations --check --dry-run

check-deploy: install
	DEBUG=false SECRET_KEY=$$($(PY) -c 'import secrets; print(secrets.token_urlsafe(50))') \
	  ALLOWED_HOSTS=datasets.example.com DATABASE_URL=$(TEST_DATABASE_URL) \
	  REDIS_URL=$(TEST_REDIS_URL) \
	  $(PY) manage.py check --deploy --fail-level WARNING

test: lint check-deploy test-only

test-only: install
	DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) $(PY) -m pytest $(PYTEST_ARGS)
	$(MAKE) test-embedded

# The tests marked both_modes again in the embedded mode: SQLite, local files, no Redis.
test-embedded: install
	TEST_MODE=embedded $(PY) -m pytest $(PYTEST_ARGS)

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: install
	DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) $(PY) tests/benchmarks/run.py $(BENCH_ARGS)

clean:
	rm -rf var
