# Two commands that work on a fresh machine with only python3:
#   make demo   (sets up .venv with what the demo needs, runs it; DEMO_ARGS="--duration 15 --no-live")
#   make test   (sets up .venv with the whole toolchain, runs ruff, mypy and the tests on asyncio and trio)
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# `make demo` installs only the demo's extra (issue 21: the test toolchain took 1 min 53 s of
# its 2 min 37 s); `make test` installs everything, the demo's extra included.
DEMO_STAMP := $(VENV)/.demo-installed
DEMO_ARGS ?=
BENCH_ARGS ?=

MUTMUT_ARGS ?= --max-children 4

.PHONY: demo test check lint typecheck pytest pytest-template generate bench mutants clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[test,demo]'
	touch $(STAMP) $(DEMO_STAMP)

$(VENV)/.bench-installed: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[test,demo,bench]'
	touch $@

$(DEMO_STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[demo]'
	touch $(DEMO_STAMP)

demo: $(DEMO_STAMP)
	$(PY) -m supervisor demo $(DEMO_ARGS)

test: $(STAMP) lint typecheck pytest pytest-template

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m supervisor._backends._generate --test

typecheck: $(STAMP)
	$(PY) -m mypy

pytest: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

# The runtime tests once more with the readable templates (asyncio's attempt, trio's) in
# place of the generated modules (issues 17, 18): both must behave alike.
pytest-template: $(STAMP)
	RINGFENCE_INLINE=0 $(PY) -m pytest tests/runtime -q -p no:randomly $(PYTEST_ARGS)

# The attempts are generated (issues 17, 18): rerun after editing
# supervisor/_backends/_asyncio.py, _trio.py or an @inline handler in supervisor/_actor.py.
generate: $(STAMP)
	$(PY) -m supervisor._backends._generate

bench: $(VENV)/.bench-installed
	$(PY) -m benchmarks $(BENCH_ARGS)

# Mutation testing of policies/ against tests/policies (issue 8): minutes, so CI does not run
# it. Settings are in pyproject.toml [tool.mutmut]; results stay in mutants/ (`.venv/bin/mutmut results`
# lists the survivors, `.venv/bin/mutmut show NAME` shows one).
mutants: $(STAMP)
	$(PY) -m pip install --quiet 'mutmut>=3.3,<4'
	rm -rf mutants
	$(VENV)/bin/mutmut run $(MUTMUT_ARGS)
	$(PY) -c 'import glob, json; codes = [c for f in glob.glob("mutants/**/*.meta", recursive=True) for c in json.load(open(f))["exit_code_by_key"].values()]; killed = sum(c in (1, 3) for c in codes); print(f"mutation score: {killed} of {len(codes)} mutants killed ({100 * killed / len(codes):.1f} %)")'

clean:
	rm -rf $(VENV) build dist *.egg-info .mypy_cache .ruff_cache mutants
