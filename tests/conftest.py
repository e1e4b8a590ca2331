"""Shared fixtures: a fake Stigg on loopback and the official SDK pointed at it."""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import stigg

from stigg_cache import FallbackPolicy, ResilientClient, Staleness
from stigg_cache.testing import ManualClock
from stigg_cache.testing.fake import FakeStigg, boolean, enum_feature, metered, numeric

API_KEY = "sk-test-0123456789abcdef"  # a recognisable fake secret, searched for in logs


@pytest.fixture(autouse=True)
def _collected_after() -> Iterator[None]:
    """Collect garbage after each test, so something it left unclosed (a socket in a cycle)
    warns in its own teardown, not in whichever later test the collector happens to run."""
    yield
    gc.collect()


@pytest.fixture
def fake() -> Iterator[FakeStigg]:
    with FakeStigg(api_key=API_KEY) as server:
        server.set_customer(
            "acme",
            [
                boolean("sso"),
                numeric("seats", 25),
                metered("api_calls", limit=100, usage=40),
                enum_feature("models", ["gpt-4", "claude"]),
            ],
        )
        yield server


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    """The store (and, beside it, the outbox) the processes of a host share: SQLite here;
    the Redis plugin's tests run the same tests on Redis by overriding this fixture."""
    return f"sqlite:///{tmp_path}/cache.db"


@pytest.fixture
def sdk(fake: FakeStigg) -> Iterator[Any]:
    """The official REST SDK with its own defaults (60 s timeout, 2 retries)."""
    client = stigg.Stigg(api_key=API_KEY, base_url=fake.url)
    yield client
    client.close()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


POLICY = FallbackPolicy(staleness=Staleness(fresh_for_s=60, max_staleness_s=3600))

MakeClient = Callable[..., ResilientClient]


@pytest.fixture
def make_client(sdk: Any, tmp_path: Path) -> Iterator[MakeClient]:
    """Build ResilientClients over the SDK; all are closed after the test."""
    made: list[ResilientClient] = []

    def make(**options: Any) -> ResilientClient:
        options.setdefault("store", f"sqlite:///{tmp_path}/cache.db")
        options.setdefault("policy", POLICY)
        client = ResilientClient(options.pop("inner", sdk), **options)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()
