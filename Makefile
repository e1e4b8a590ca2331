# Two commands a fresh clone needs: `make demo` and `make test`.
# Each creates or updates .venv itself (Python >= 3.11 and pip are all it needs).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test bench fuzz audit lint typecheck pytest clean
FUZZ_SECONDS ?= 60

$(STAMP): pyproject.toml stores/redis/pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "stigg-cache needs Python >= 3.11"'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[rest,dev,bench,prometheus,chaos]' -e stores/redis
	@touch $@

demo: $(STAMP)
	$(PY) -m stigg_cache.demo

bench: $(STAMP)
	$(PY) -m stigg_cache.benchmarks --out bench/results.json

# Every fuzz target for FUZZ_SECONDS each (atheris); crashing inputs land in fuzz/crashes/.
fuzz: $(STAMP)
	$(PY) -m pip install --quiet -e '.[fuzz]'
	$(PY) -m fuzz.run $(FUZZ_SECONDS)

# Known vulnerabilities in what is installed (PyPI's advisory data).
audit: $(STAMP)
	$(VENV)/bin/pip-audit --progress-spinner off

lint: $(STAMP)
	$(VENV)/bin/ruff check stigg_cache tests stores fuzz
	$(VENV)/bin/ruff format --check stigg_cache tests stores fuzz
	$(VENV)/bin/lint-imports

typecheck: $(STAMP)
	$(VENV)/bin/mypy

pytest: $(STAMP)
	$(PY) -m pytest -q

test: lint typecheck audit pytest

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
