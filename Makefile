# Two commands a fresh clone needs: `make demo` and `make test`.
# Each creates or updates .venv itself (Python >= 3.11 and pip are all it needs).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo dist wheelhouse docs test bench fuzz audit lint typecheck pytest sdk-tests clean
FUZZ_SECONDS ?= 60
# The GraphQL and sidecar SDKs install the same `stigg` module as the REST SDK (and
# each other's): each family is tested in a venv of its own, .venv-<family>.
SDK_FAMILIES := graphql-v1 graphql-v2 sidecar
extra_graphql-v1 := graphql
extra_graphql-v2 := graphql-v2
extra_sidecar    := sidecar

NEW_VENV = @$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "stigg-cache needs Python >= 3.11"' \
	&& (test -x $(PY) || $(PYTHON) -m venv $(VENV))

# `make demo` needs the package and the REST SDK it wraps, nothing more: quick on a fresh clone.
DEMO_STAMP := $(VENV)/.demo-installed
$(DEMO_STAMP): pyproject.toml
	$(NEW_VENV)
	$(PY) -m pip install --quiet -e '.[rest]'
	@touch $@

$(STAMP): pyproject.toml stores/redis/pyproject.toml
	$(NEW_VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[rest,dev,bench,prometheus,chaos]' -e stores/redis
	@touch $@ $(DEMO_STAMP)

.PRECIOUS: .venv-%/.installed  # a venv is kept, not deleted as an intermediate file
.venv-%/.installed: pyproject.toml
	@test -x .venv-$*/bin/python || $(PYTHON) -m venv .venv-$*
	.venv-$*/bin/python -m pip install --quiet --upgrade pip
	.venv-$*/bin/python -m pip install --quiet -e '.[$(extra_$*),test]'
	@touch $@

demo: $(DEMO_STAMP)
	$(PY) -m stigg_cache.demo

# Sdists and wheels of stigg-cache and stigg-cache-redis in dist/, checked by twine.
dist: $(STAMP)
	rm -rf dist
	$(PY) -m build -q --outdir dist .
	$(PY) -m build -q --outdir dist stores/redis
	$(VENV)/bin/twine check --strict dist/*

# What the built wheels depend on, as wheels: the clean-venv install test installs offline.
WHEELHOUSE := build/wheelhouse
wheelhouse: dist
	rm -rf $(WHEELHOUSE)
	$(PY) -m pip wheel --quiet --wheel-dir $(WHEELHOUSE) \
		"$$(echo dist/stigg_cache-*.whl)[testing]" dist/stigg_cache_redis-*.whl

# The documentation site (MkDocs, Material, the API reference from the docstrings) in
# build/site; --strict: a broken link, a missing page or an unresolved reference fails.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict  # not --quiet: it hides the warnings --strict counts

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
	$(VENV)/bin/ruff check stigg_cache tests stores fuzz docs/hooks.py
	$(VENV)/bin/ruff format --check stigg_cache tests stores fuzz docs/hooks.py
	$(VENV)/bin/lint-imports

typecheck: $(STAMP)
	$(VENV)/bin/mypy

pytest: $(STAMP) wheelhouse
	STIGG_CACHE_DIST=$(CURDIR)/dist STIGG_CACHE_WHEELHOUSE=$(CURDIR)/$(WHEELHOUSE) $(PY) -m pytest -q

# The outage story for every client of each SDK family, in that family's venv.
sdk-tests: $(addprefix sdk-test-,$(SDK_FAMILIES))

sdk-test-%: .venv-%/.installed
	STIGG_SDK_FAMILY=$* .venv-$*/bin/python -m pytest -q -p no:cacheprovider tests/clients

test: lint typecheck audit docs pytest sdk-tests

clean:
	rm -rf $(VENV) $(addprefix .venv-,$(SDK_FAMILIES)) .mypy_cache .pytest_cache .ruff_cache dist build
