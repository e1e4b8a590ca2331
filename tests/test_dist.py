"""The built wheels, installed into a clean venv, work as the README says.

`make pytest` builds them once (`make dist`, then `make wheelhouse` for their
dependencies) and names both folders in STIGG_CACHE_DIST and
STIGG_CACHE_WHEELHOUSE; the venv is then installed offline from them. Run
alone, this module builds them itself (the build and `pip wheel` use the
package index, as `make` does).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import venv
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from stigg_cache.testing.standalone import LOCAL_API_KEY

ROOT = Path(__file__).resolve().parent.parent
REDIS_URL = os.environ.get("STIGG_CACHE_REDIS_URL", "redis://127.0.0.1:6379/0")
NAMESPACE = f"dist{os.getpid()}"
# The README's quick start, with the package's own fake for Stigg, then the Redis plugin
# found by its URL scheme (nothing imports it).
QUICK_START = textwrap.dedent(
    """
    import sys
    from importlib import resources
    from stigg_cache import ResilientClient, Source

    base_url, store_dir, redis_url = sys.argv[1:]
    for store in (f"sqlite:///{store_dir}/cache.db", redis_url):
        assert "stigg_cache_redis" not in sys.modules
        with ResilientClient(None, api_key="sk-fake-stigg-local", base_url=base_url, store=store,
                             check_timeout=5) as client:
            ent = client.get_metered_entitlement(customer_id="acme", feature_id="api_calls")
            print(store.split(":")[0], ent.decision.source.value, ent.current_usage, ent.usage_limit)
    for package in ("stigg_cache", "stigg_cache_redis"):
        print(package, "py.typed", resources.files(package).joinpath("py.typed").is_file())
    print("modules", sorted({m.split(".")[0] for m in sys.modules} & {"tests", "stigg", "graphql"}))
    """
)


class Built:
    """The wheels and the wheelhouse of their dependencies."""

    def __init__(self, dist: Path, wheelhouse: Path) -> None:
        (self.core,) = dist.glob("stigg_cache-*.whl")
        (self.redis,) = dist.glob("stigg_cache_redis-*.whl")
        self.wheelhouse = wheelhouse


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    dist, wheelhouse = os.environ.get("STIGG_CACHE_DIST"), os.environ.get("STIGG_CACHE_WHEELHOUSE")
    if dist and wheelhouse:
        return Built(Path(dist), Path(wheelhouse))
    out = tmp_path_factory.mktemp("dist")
    for project in (ROOT, ROOT / "stores" / "redis"):
        _run(sys.executable, "-m", "build", "--wheel", "--outdir", out, project)
    built = Built(out, out / "wheelhouse")
    _run(*_pip("wheel", "--wheel-dir", built.wheelhouse, f"{built.core}[testing]", built.redis))
    return built


@pytest.fixture(scope="session")
def clean_venv(tmp_path_factory: pytest.TempPathFactory, built: Built) -> Path:
    """A venv with nothing but the two wheels and their dependencies, installed offline."""
    home = tmp_path_factory.mktemp("clean-venv")
    venv.EnvBuilder(with_pip=False).create(home)
    python = home / "bin" / "python"
    _run(*_pip("--python", python, "install", "--no-index", "--find-links", built.wheelhouse,
               built.core, built.redis))  # fmt: skip
    return home


@pytest.fixture
def redis_namespace() -> Iterator[str]:
    """A namespace of this test's in the real Redis (DEVELOPERS.md), emptied afterwards."""
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=2)
    yield NAMESPACE
    for key in client.scan_iter(match=f"*stigg-cache:{NAMESPACE}*", count=1000):
        client.delete(key)
    client.close()


def test_the_wheels_hold_the_packages_their_markers_and_entry_points_and_no_tests(
    built: Built,
) -> None:
    core, plugin = (set(zipfile.ZipFile(w).namelist()) for w in (built.core, built.redis))
    assert "stigg_cache/py.typed" in core
    assert "stigg_cache_redis/py.typed" in plugin
    for source, wheel in ((ROOT, core), (ROOT / "stores" / "redis", plugin)):
        package = next(source.glob("stigg_cache*/py.typed")).parent
        files = {p for p in package.rglob("*") if p.is_file() and "__pycache__" not in p.parts}
        assert {str(p.relative_to(source)) for p in files} <= wheel  # .lua and .yaml included
    tops = {name.split("/")[0] for name in core | plugin}
    assert tops == {
        "stigg_cache",
        "stigg_cache_redis",
        "stigg_cache-0.1.0.dist-info",
        "stigg_cache_redis-0.1.0.dist-info",
    }
    assert not [name for name in core | plugin if "conftest" in name or "/tests/" in name]
    metadata = zipfile.ZipFile(built.core).read("stigg_cache-0.1.0.dist-info/METADATA").decode()
    assert "Provides-Extra: testing" in metadata
    assert 'Requires-Dist: graphql-core>=3.2; extra == "testing"' in metadata


def test_the_quick_start_runs_from_a_clean_venv_with_the_redis_plugin_found_by_entry_point(
    clean_venv: Path, tmp_path: Path, redis_namespace: str
) -> None:
    fake = _start_fake(clean_venv)
    try:
        redis_url = f"{REDIS_URL}?namespace={redis_namespace}&local_outbox={tmp_path}/local.db"
        done = _run(clean_venv / "bin" / "python", "-c", QUICK_START, fake.url, tmp_path, redis_url)
    finally:
        fake.stop()
    assert done.stdout.splitlines() == [
        "sqlite LIVE 420.0 1000.0",
        "redis LIVE 420.0 1000.0",
        "stigg_cache py.typed True",
        "stigg_cache_redis py.typed True",
        "modules []",  # no SDK, no graphql-core: the base install needs neither
    ]
    assert (tmp_path / "cache.db").is_file()
    keys = redis.Redis.from_url(REDIS_URL).keys(f"*stigg-cache:{redis_namespace}*")
    assert keys  # the snapshot went to Redis, through the plugin's entry point


def test_the_testing_extra_brings_what_the_fakes_graphql_endpoint_needs(
    clean_venv: Path, built: Built
) -> None:
    hint = "pip install 'stigg-cache[testing]'"
    query = {
        "query": 'query State { entitlementsState(query: {customerId: "acme"}) { accessDeniedReason } }'
    }
    headers = {"X-API-KEY": LOCAL_API_KEY}
    without = _start_fake(clean_venv)
    try:  # without the extra: a clear error naming it, in the announcement and the answer
        assert without.announced["GraphQL"].startswith("unavailable: graphql is not importable")
        assert hint in without.announced["GraphQL"]
        refused = httpx.post(f"{without.url}/graphql", json=query, headers=headers, timeout=10)
    finally:
        without.stop()
    assert hint in refused.json()["errors"][0]["message"]
    python = clean_venv / "bin" / "python"
    _run(*_pip("--python", python, "install", "--no-index", "--find-links", built.wheelhouse,
               f"{built.core}[testing]"))  # fmt: skip
    with_extra = _start_fake(clean_venv)
    try:
        assert with_extra.announced["GraphQL"] == f"{with_extra.url}/graphql"
        answer = httpx.post(
            with_extra.announced["GraphQL"], json=query, headers=headers, timeout=10
        )
    finally:
        with_extra.stop()
    assert answer.json() == {"data": {"entitlementsState": {"accessDeniedReason": None}}}


class _Fake:
    def __init__(self, process: subprocess.Popen[str], announced: dict[str, str]) -> None:
        self.process = process
        self.announced = announced
        self.url = announced["REST base URL"]

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        out, err = self.process.communicate(timeout=30)
        assert self.process.returncode == 0, err
        assert "fake Stigg stopped after" in out


def _start_fake(home: Path) -> _Fake:
    """`stigg-cache fake --port 0`, through the entry point the wheel installed."""
    command = [str(home / "bin" / "stigg-cache"), "fake", "--port", "0"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout is not None
    announced: dict[str, str] = {}
    for line in process.stdout:
        name, _, value = line.strip().partition("  ")
        announced[name] = value.strip()
        if line.startswith("point your app"):
            break
    if "REST base URL" not in announced:
        process.kill()
        pytest.fail(f"stigg-cache fake did not start: {process.communicate(timeout=30)}")
    return _Fake(process, announced)


def _pip(*args: object) -> list[object]:
    return [sys.executable, "-m", "pip", "--quiet", "--disable-pip-version-check", *args]


def _run(*command: object) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(part) for part in command], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, f"{command}: {done.stdout}\n{done.stderr}"
    return done
