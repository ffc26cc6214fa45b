# The two commands of the README: `make demo` (the main job) and `make test` (the test suite).
# Both create .venv on first use; every pip install goes through constraints.txt.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed

.PHONY: install demo test test-e2e test-slow test-all lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(PIP) install -q -U pip
	$(PIP) install -c constraints.txt -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)  # one progress bar per first model; `make demo V=1`: their training logs (ultralytics' too)
	$(VENV)/bin/histoloop $(if $(V),-v )demo

test: $(STAMP)
	$(PY) -m pytest

test-e2e: $(STAMP)  # the end-to-end suite against a real Label Studio (installed into .venv-label-studio)
	$(PY) -m pytest -m labelstudio

test-slow: $(STAMP)  # the tests marked slow (minutes each: multi-process training, the demo's own recipe)
	$(PY) -m pytest -m slow

test-all: $(STAMP)  # the default suite, the end-to-end suite and the tests marked slow
	$(PY) -m pytest -m "slow or not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy

bench: $(STAMP)
	$(PY) -m benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
