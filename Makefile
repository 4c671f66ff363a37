# Two commands on a fresh machine: `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8000
WORKERS ?= 4
HOST ?= 127.0.0.1
# Largest WebSocket frame uvicorn reads (bytes): the app's CHAT_FRAME_MAX_BYTES (docs/security.md).
WS_MAX_SIZE ?= $(or $(CHAT_FRAME_MAX_BYTES),65536)

.PHONY: install run serve test lint format bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

install: $(VENV)/.installed

## Development server on the embedded defaults: SQLite and the in-memory channel layer.
run: install
	DEBUG=1 $(PY) manage.py migrate --noinput
	DEBUG=1 $(PY) manage.py runserver $(HOST):$(PORT)

## Production-style serving: uvicorn with $(WORKERS) workers (needs REDIS_URL when WORKERS > 1).
serve: install
	@if [ "$(WORKERS)" -gt 1 ] && [ -z "$$REDIS_URL" ]; then \
	  echo "make serve WORKERS=$(WORKERS) needs REDIS_URL (e.g. REDIS_URL=redis://127.0.0.1:6379/0):" \
	       "the in-memory channel layer cannot cross processes. Or use WORKERS=1." >&2; exit 2; fi
	$(PY) manage.py migrate --noinput
	$(PY) manage.py collectstatic --noinput --verbosity 0
	@# Bytecode once per release: a worker that cannot write __pycache__ (a service user, or
	@# PYTHONDONTWRITEBYTECODE as in many containers) would compile every module at each start.
	$(PY) -m compileall -q -x '/(\.venv|node_modules|\.git|tests)/' .
	$(VENV)/bin/uvicorn chatproject.asgi:application --host $(HOST) --port $(PORT) --workers $(WORKERS) \
	  --ws-per-message-deflate false --ws-max-size $(WS_MAX_SIZE)

## Lint, format check, then every test (installs the system programs the tests start).
test: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	bash scripts/system-deps.sh
	$(VENV)/bin/pytest

lint: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

## The benchmark (bench/, docs/performance.md): about 12 minutes; run it on an idle machine.
bench: install
	$(PY) -m pip install --quiet -e ".[bench]"
	bash scripts/system-deps.sh
	$(PY) -m bench.run
	$(PY) -m bench.presence

clean:
	rm -rf $(VENV) staticfiles .pytest_cache
