# make demo / make test / make lint / make bench / make docs
# Each target creates .venv with python3.11 when missing and (re)installs only when
# constraints.txt or pyproject.toml changed (a stamp named after their hash).

PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
HASH   := $(shell cat constraints.txt pyproject.toml | sha1sum | cut -c1-12)
STAMP  := $(VENV)/.installed-$(HASH)
PYTEST_ARGS ?=

.PHONY: venv demo test lint bench docs compat clean

venv: $(STAMP)

$(STAMP):
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e ".[dev,tutorials,io]"
	@rm -f $(VENV)/.installed-*
	@touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/madspatial demo --out demo_output

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

bench: $(STAMP)
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

# sphinx + myst-nb + furo pinned in docs/constraints.txt; tutorials are rendered, not
# executed (tests/test_tutorials.py runs them); -W: any warning fails the build
docs: $(STAMP)
	$(PY) -m pip install --quiet -c constraints.txt -c docs/constraints.txt -e ".[dev,docs]"
	$(PY) -m sphinx -W --keep-going -b html docs docs/_build/html

# The current scverse stack (spatialdata 0.8+, scanpy 1.12+, anndata 0.12+ need Python >= 3.12):
# a separate venv with the newest releases of everything (no constraints file), then the tests.
# torch for 3.12 comes from PyPI as a CUDA build of several GB; not part of .ci/run.
COMPAT_PYTHON ?= $(shell command -v python3.12 || echo $(HOME)/.pyenv/versions/3.12.1/bin/python3.12)
COMPAT_VENV   ?= .venv-compat
compat:
	@test -x $(COMPAT_VENV)/bin/python || $(COMPAT_PYTHON) -m venv $(COMPAT_VENV)
	$(COMPAT_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(COMPAT_VENV)/bin/python -m pip install --quiet --upgrade -e ".[dev,tutorials,io]"
	$(COMPAT_VENV)/bin/python -m pip freeze > $(COMPAT_VENV)/freeze.txt
	$(COMPAT_VENV)/bin/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) $(COMPAT_VENV) demo_output docs/_build .pytest_cache .ruff_cache
