"""Fixtures for the Redis plugin's tests: the real Redis server, one namespace per test.

In CI (``CI=true``) a Redis that does not answer fails these tests; on a
developer's machine they skip, saying how to start one.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from stigg_cache.testing.fake import FakeStigg, boolean, metered

REDIS_URL = os.environ.get("STIGG_CACHE_REDIS_URL", "redis://127.0.0.1:6379/0")
START_HINT = (
    "start one with `redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save '' "
    "--appendonly no`, or point STIGG_CACHE_REDIS_URL at one"
)
_used_namespaces: set[str] = set()


def namespace_for(base: Path) -> str:
    """A namespace of its own for each test directory (stable when a test reopens)."""
    name = "t" + hashlib.sha256(str(base).encode()).hexdigest()[:12]
    _used_namespaces.add(name)
    return name


def url_for(base: Path, server: str = REDIS_URL) -> str:
    """A store/outbox URL whose keys and local fallback belong to ``base`` alone."""
    return f"{server}?namespace={namespace_for(base)}&local_outbox={base}/local-outbox.db"


@pytest.fixture(scope="session", autouse=True)
def redis_server() -> Iterator[str]:
    """The real Redis; its keys of every test namespace are removed afterwards."""
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=2)
    try:
        client.ping()
    except redis.RedisError as error:
        message = f"Redis is not reachable at {REDIS_URL} ({error}): {START_HINT}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    yield REDIS_URL
    for name in _used_namespaces:
        for key in client.scan_iter(match=f"*stigg-cache:{name}*", count=1000):
            client.delete(key)
    client.close()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class OwnRedis:
    """A redis-server of the test's own on a loopback port, to stop and start at will."""

    def __init__(self, password: str | None = None, *, persist_in: Path | None = None) -> None:
        """``persist_in``: keep every write in an append-only file there, fsynced before
        Redis answers (``appendfsync always``), so a restart, even after SIGKILL, loses
        nothing acknowledged; else Redis restarts empty."""
        self.port = _free_port()
        self.password = password
        self.persist_in = persist_in
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary, f"redis-server is not installed: {START_HINT}"
        self._process = subprocess.Popen(
            [
                binary,
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--save",
                "",
                *self._persistence(),
                *(["--requirepass", self.password] if self.password else []),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                redis.Redis(port=self.port, password=self.password, socket_timeout=0.5).ping()
            except redis.RedisError:
                time.sleep(0.02)
            else:
                return
        raise AssertionError("redis-server did not start within 10 s")

    def _persistence(self) -> list[str]:
        if self.persist_in is None:
            return ["--appendonly", "no"]
        self.persist_in.mkdir(parents=True, exist_ok=True)
        return ["--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.persist_in)]

    def stop(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait(timeout=10)
            self._process = None


@pytest.fixture
def own_redis() -> Iterator[OwnRedis]:
    server = OwnRedis()
    server.start()
    yield server
    server.stop()


API_KEY = "sk-test-redis-0123456789abcdef"


@pytest.fixture
def fake() -> Iterator[FakeStigg]:
    """The package's fake Stigg on loopback, with one customer."""
    with FakeStigg(api_key=API_KEY) as server:
        server.set_customer("acme", [boolean("sso"), metered("api_calls", limit=100, usage=40)])
        yield server
