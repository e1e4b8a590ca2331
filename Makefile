# Two commands a fresh clone needs: `make demo` and `make test`.
# Each creates or updates .venv itself (Python >= 3.11 and pip are all it needs).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test bench fuzz audit lint typecheck pytest sdk-tests clean
FUZZ_SECONDS ?= 60
# The GraphQL and sidecar SDKs install the same `stigg` module as the REST SDK (and
# each other's): each family is tested in a venv of its own, .venv-<family>.
SDK_FAMILIES := graphql-v1 graphql-v2 sidecar
extra_graphql-v1 := graphql
extra_graphql-v2 := graphql-v2
extra_sidecar    := sidecar

$(STAMP): pyproject.toml stores/redis/pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "stigg-cache needs Python >= 3.11"'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[rest,dev,bench,prometheus,chaos]' -e stores/redis
	@touch $@

.PRECIOUS: .venv-%/.installed  # a venv is kept, not deleted as an intermediate file
.venv-%/.installed: pyproject.toml
	@test -x .venv-$*/bin/python || $(PYTHON) -m venv .venv-$*
	.venv-$*/bin/python -m pip install --quiet --upgrade pip
	.venv-$*/bin/python -m pip install --quiet -e '.[$(extra_$*),test]'
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

# The outage story for every client of each SDK family, in that family's venv.
sdk-tests: $(addprefix sdk-test-,$(SDK_FAMILIES))

sdk-test-%: .venv-%/.installed
	STIGG_SDK_FAMILY=$* .venv-$*/bin/python -m pytest -q -p no:cacheprovider tests/clients

test: lint typecheck audit pytest sdk-tests

clean:
	rm -rf $(VENV) $(addprefix .venv-,$(SDK_FAMILIES)) .mypy_cache .pytest_cache .ruff_cache
