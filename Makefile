# Two commands do everything: `make run` and `make test` (set-up included).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
ARGS ?=

.PHONY: run shell serve test lint bench engine-packages clean

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

# The real Docker engine, registry and busybox the tests and the sandbox use (Debian packages).
engine-packages: $(STAMP)
	$(PY) -m bot.sandbox install

# In Slack when tokens are set; otherwise the terminal against DOCKER_HOST, or a private sandbox engine.
run: $(STAMP) engine-packages
	$(PY) -m bot.runtime.launch $(ARGS)

test: $(STAMP) engine-packages
	$(PY) -m ruff check bot handlers tests bench deploy
	$(VENV)/bin/lint-imports --no-cache
	$(PY) -m pytest -q $(ARGS)

lint: $(STAMP)
	$(PY) -m ruff check bot handlers tests bench deploy
	$(VENV)/bin/lint-imports --no-cache
	$(PY) -m ruff format --check bot handlers tests bench deploy

bench: $(STAMP) engine-packages
	$(PY) -m bench $(if $(QUICK),--quick,)

clean:
	rm -rf $(VENV) data .pytest_cache .ruff_cache
