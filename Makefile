# make demo / make test / make lint / make bench / make docs
# Each target creates .venv with python3.11 when missing and (re)installs only when
# constraints.txt or pyproject.toml changed (a stamp named after their hash).

PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
HASH   := $(shell cat constraints.txt pyproject.toml | sha1sum | cut -c1-12)
STAMP  := $(VENV)/.installed-$(HASH)
PYTEST_ARGS ?=

.PHONY: venv demo test lint bench docs clean

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

clean:
	rm -rf $(VENV) demo_output docs/_build .pytest_cache .ruff_cache
