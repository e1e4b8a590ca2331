"""Environments never share data on a store the user names (DESIGN §11, #31 item 1).

A shared config file (or Helm values) gives staging and production the same
``store=sqlite:////.../stigg-cache.db``. The first environment to use it owns
its names; another keeps its snapshots under keys of its own and its usage in
an outbox file of its own: it never answers from the other's snapshots, and
usage queued with one key is never sent with another. A store of an earlier
version keeps its snapshots and queued usage for its environment.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stigg_cache import AsyncResilientClient, ResilientClient, Source, environment_token
from stigg_cache.testing.fake import FakeMode, FakeStigg, boolean, metered

STAGING_KEY = "sk-staging-0123456789abcdef"
PRODUCTION_KEY = "sk-production-fedcba9876543210"
ROTATED_KEY = "sk-production-rotated-00000000"


@pytest.fixture
def staging() -> Iterator[FakeStigg]:
    with FakeStigg(api_key=STAGING_KEY) as server:
        server.set_customer("shared-id", [boolean("sso", granted=True), metered("api", limit=100)])
        yield server


@pytest.fixture
def production() -> Iterator[FakeStigg]:
    with FakeStigg(api_key=PRODUCTION_KEY) as server:
        server.set_customer("shared-id", [boolean("sso", granted=False), metered("api", limit=100)])
        yield server


@pytest.fixture
def shared(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'stigg-cache.db'}"  # the absolute four-slash form


def _client(fake: FakeStigg, key: str, **options: Any) -> ResilientClient:
    return ResilientClient(None, api_key=key, base_url=fake.url, check_timeout=2.0, **options)


def _sso(client: ResilientClient) -> tuple[bool, Source]:
    answer = client.get_boolean_entitlement(customer_id="shared-id", feature_id="sso")
    return answer.has_access, answer.decision.source


def _used(fake: FakeStigg) -> list[float]:
    return sorted(float(usage["value"]) for usage in fake.account.usages)


def test_two_environments_on_one_named_store_answer_each_from_its_own_stigg(
    shared: str, staging: FakeStigg, production: FakeStigg, caplog: pytest.LogCaptureFixture
) -> None:
    with _client(staging, STAGING_KEY, store=shared) as client:
        assert _sso(client) == (True, Source.LIVE)
    with caplog.at_level(logging.INFO, logger="stigg_cache"):
        prod = _client(production, PRODUCTION_KEY, store=shared)
    with prod:
        assert _sso(prod) == (False, Source.LIVE)
        token = environment_token(production.url, PRODUCTION_KEY)
        assert prod.status().namespace == token
        assert prod.status().store == f"{shared} (keys of {token})"
    assert production.entitlement_requests() == 1
    apart = [r for r in caplog.records if "environment_apart" in r.getMessage()]
    assert len(apart) == 2  # once for its snapshots, once for its outbox
    assert PRODUCTION_KEY not in caplog.text
    with _client(staging, STAGING_KEY, store=shared) as client:  # the owner keeps its own
        assert _sso(client) == (True, Source.CACHE)
    with _client(production, PRODUCTION_KEY, store=shared) as client:  # and so does the other
        assert _sso(client) == (False, Source.CACHE)
    assert (staging.entitlement_requests(), production.entitlement_requests()) == (1, 1)


def test_each_stigg_receives_only_its_own_usage_from_one_named_store(
    shared: str, staging: FakeStigg, production: FakeStigg
) -> None:
    with _client(staging, STAGING_KEY, store=shared) as client:
        _sso(client)
        staging.set_mode(FakeMode.ERROR_5XX)
        for _ in range(5):
            client.report_usage(customer_id="shared-id", feature_id="api", value=1)
    with _client(production, PRODUCTION_KEY, store=shared) as client:
        client.report_usage(customer_id="shared-id", feature_id="api", value=2)
        assert client.flush(timeout=10).drained
    assert _used(production) == [2.0]  # never staging's, with production's key
    staging.set_mode(FakeMode.UP)
    with _client(staging, STAGING_KEY, store=shared) as client:
        assert client.flush(timeout=10).drained
    assert _used(staging) == [1.0] * 5
    assert _used(production) == [2.0]


def test_the_async_client_keeps_environments_on_one_named_store_apart(
    shared: str, staging: FakeStigg, production: FakeStigg
) -> None:
    async def run(fake: FakeStigg, key: str, value: int) -> tuple[bool, Source, bool]:
        async with AsyncResilientClient(
            None, api_key=key, base_url=fake.url, check_timeout=2.0, store=shared
        ) as client:
            answer = await client.get_boolean_entitlement(customer_id="shared-id", feature_id="sso")
            await client.report_usage(customer_id="shared-id", feature_id="api", value=value)
            drained = (await client.flush(timeout=10)).drained
            return answer.has_access, answer.decision.source, drained

    staging.set_mode(FakeMode.UP)
    assert asyncio.run(run(staging, STAGING_KEY, 3)) == (True, Source.LIVE, True)
    production.set_mode(FakeMode.ERROR_5XX)
    # Stigg down and none of its own cached: the policy's default, never staging's snapshot
    assert asyncio.run(run(production, PRODUCTION_KEY, 7))[1] is Source.DEFAULT
    assert asyncio.run(run(staging, STAGING_KEY, 4)) == (True, Source.CACHE, True)
    assert _used(staging) == [3.0, 4.0]  # production's 7 waits for production
    production.set_mode(FakeMode.UP)
    assert asyncio.run(run(production, PRODUCTION_KEY, 1)) == (False, Source.LIVE, True)
    assert _used(production) == [1.0, 7.0]
    assert production.entitlement_requests() >= 1


def test_a_named_sqlite_outbox_is_kept_apart_too(
    tmp_path: Path, staging: FakeStigg, production: FakeStigg
) -> None:
    outbox = tmp_path / "usage.db"
    options = {"store": "memory://", "outbox": f"sqlite:///{outbox}"}
    staging.set_mode(FakeMode.ERROR_5XX)
    with _client(staging, STAGING_KEY, **options) as client:
        client.report_usage(customer_id="shared-id", feature_id="api", value=5)
    with _client(production, PRODUCTION_KEY, **options) as client:
        client.report_usage(customer_id="shared-id", feature_id="api", value=1)
        assert client.flush(timeout=10).drained
    assert _used(production) == [1.0]
    token = environment_token(production.url, PRODUCTION_KEY)
    assert (tmp_path / f"usage-{token}.db").exists()
    staging.set_mode(FakeMode.UP)
    with _client(staging, STAGING_KEY, **options) as client:
        assert client.flush(timeout=10).drained
    assert _used(staging) == [5.0]


def test_a_store_of_an_earlier_version_keeps_its_snapshots_and_usage(
    tmp_path: Path, shared: str, staging: FakeStigg, production: FakeStigg
) -> None:
    with _client(staging, STAGING_KEY, store=shared) as client:
        _sso(client)
        staging.set_mode(FakeMode.ERROR_5XX)
        client.report_usage(customer_id="shared-id", feature_id="api", value=4)
    for stamp in tmp_path.glob("*.environment"):  # as an earlier version left them: unstamped
        stamp.unlink()
    staging.set_mode(FakeMode.UP)
    with _client(staging, STAGING_KEY, store=shared) as client:
        assert _sso(client) == (True, Source.CACHE)
        assert client.status().store == shared
        assert client.flush(timeout=10).drained
    assert _used(staging) == [4.0]
    assert staging.entitlement_requests() == 1


def test_a_rotated_key_is_another_environment(shared: str, production: FakeStigg) -> None:
    with _client(production, PRODUCTION_KEY, store=shared) as client:
        _sso(client)
        production.set_mode(FakeMode.ERROR_5XX)
        client.report_usage(customer_id="shared-id", feature_id="api", value=6)
    production.set_mode(FakeMode.UP)
    production.api_key = ROTATED_KEY
    with _client(production, ROTATED_KEY, store=shared) as client:
        assert _sso(client) == (False, Source.LIVE)  # a cold cache
        assert client.flush(timeout=10).drained
    assert _used(production) == []  # the old key's usage is not sent with the new one
    assert production.entitlement_requests() == 2
