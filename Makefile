# Two commands that work on a fresh machine with only python3:
#   make demo   (sets up .venv, runs the demo; DEMO_ARGS="--duration 15 --no-live")
#   make test   (sets up .venv, runs ruff, mypy and the tests on asyncio and trio)
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DEMO_ARGS ?=
BENCH_ARGS ?=

.PHONY: demo test check lint typecheck pytest bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[test,demo]'
	touch $(STAMP)

$(VENV)/.bench-installed: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[test,demo,bench]'
	touch $@

demo: $(STAMP)
	$(PY) -m supervisor demo $(DEMO_ARGS)

test: $(STAMP) lint typecheck pytest

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

typecheck: $(STAMP)
	$(PY) -m mypy

pytest: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

bench: $(VENV)/.bench-installed
	$(PY) -m benchmarks $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build dist *.egg-info .mypy_cache .ruff_cache
