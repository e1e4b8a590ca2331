# Two commands a fresh clone needs: `make demo` and `make test`.
# Each creates or updates .venv itself (Python >= 3.11 and pip are all it needs).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test bench lint typecheck pytest clean

$(STAMP): pyproject.toml stores/redis/pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "stigg-cache needs Python >= 3.11"'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[rest,dev,bench,prometheus]' -e stores/redis
	@touch $@

demo: $(STAMP)
	$(PY) -m stigg_cache.demo

bench: $(STAMP)
	$(PY) -m stigg_cache.benchmarks --out bench/results.json

lint: $(STAMP)
	$(VENV)/bin/ruff check stigg_cache tests stores
	$(VENV)/bin/ruff format --check stigg_cache tests stores
	$(VENV)/bin/lint-imports

typecheck: $(STAMP)
	$(VENV)/bin/mypy

pytest: $(STAMP)
	$(PY) -m pytest -q

test: lint typecheck pytest

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
