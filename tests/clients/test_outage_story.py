"""One outage story for every Stigg client we wrap, over real loopback sockets.

warm -> Stigg blackholed -> stale answers within the budget -> a cold
customer gets the policy (or the default) -> usage reported meanwhile ->
Stigg restored -> fresh answers again, and the usage reaches Stigg exactly once.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import time
from pathlib import Path
from typing import Any

import pytest

from stigg_cache import ConnectionState, Source
from stigg_cache.testing import ManualClock
from stigg_cache.testing.fake import FakeMode
from tests.clients.conftest import (
    BUILDERS,
    CHECK_TIMEOUT_S,
    FAMILIES,
    World,
    ask,
    family,
    until,
    warm,
)
from tests.conftest import API_KEY

SLACK_S = 1.0  # scheduling on a shared 2-core machine; the budget itself is 0.3 s


async def _story(client_kind: str, world: World, tmp_path: Path) -> None:
    clock = ManualClock()
    account = world.fake.account
    async with BUILDERS[client_kind](world, clock, tmp_path) as client:
        await warm(client)
        calls = await ask(
            client.get_metered_entitlement(
                customer_id="acme", feature_id="api_calls", requested_usage=10
            )
        )
        assert (calls.decision.source, calls.current_usage, calls.usage_limit) == (
            Source.CACHE,
            40,
            100,
        )

        world.set_mode(FakeMode.BLACKHOLE)
        clock.advance(120)  # past fresh_for (60 s), within max_staleness (1 h)
        started = time.monotonic()
        stale = await ask(client.get_boolean_entitlement(customer_id="acme", feature_id="sso"))
        stale_s = time.monotonic() - started
        assert (stale.decision.source, stale.decision.age_s, stale.has_access) == (
            Source.STALE,
            120,
            True,
        )
        assert stale_s < CHECK_TIMEOUT_S + SLACK_S

        started = time.monotonic()
        ruled = await ask(client.get_boolean_entitlement(customer_id="newco", feature_id="sso"))
        ruled_s = time.monotonic() - started
        assert (ruled.decision.source, ruled.decision.rule, ruled.has_access) == (
            Source.POLICY,
            "newcomers",
            True,
        )
        assert ruled_s < CHECK_TIMEOUT_S + SLACK_S
        default = await ask(client.get_metered_entitlement(customer_id="newco", feature_id="x"))
        assert (default.decision.source, default.has_access) == (Source.DEFAULT, True)

        usage = await ask(client.report_usage(customer_id="acme", feature_id="api_calls", value=5))
        (event,) = await ask(client.report_event([{"customer_id": "acme", "event_name": "login"}]))

        world.set_mode(FakeMode.UP)

        async def fresh() -> bool:
            clock.advance(5)  # time passes: the breaker's backoff ends, a stale answer probes
            answer = await ask(client.get_boolean_entitlement(customer_id="acme", feature_id="sso"))
            return bool(answer.decision.source is Source.CACHE)

        await until(fresh, "a fresh answer after Stigg came back")
        assert client.status().state is ConnectionState.CONNECTED
        assert API_KEY not in f"{client!r} {client.status()}"
        flushed = await ask(client.flush(timeout=15))
        assert flushed.drained, flushed

    events = [e for e in account.events if e["idempotencyKey"] == event.idempotency_key]
    assert len(events) == 1
    assert account.receipts[event.idempotency_key] == 1  # sent once, not deduplicated
    usages = [u for u in account.usages if (u["customerId"], u["value"]) == ("acme", 5)]
    assert len(usages) == 1
    if client_kind != "sidecar":  # the sidecar's ReportUsage carries no idempotency key
        assert usages[0]["idempotencyKey"] == usage.idempotency_key
        assert account.receipts[usage.idempotency_key] == 1
    assert account.usage_of("acme", "api_calls") == 45


def test_the_outage_story(
    client_kind: str, world: World, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    asyncio.run(_story(client_kind, world, tmp_path))
    assert API_KEY not in caplog.text  # the SDKs' own loggers included
    for written in tmp_path.rglob("*"):
        if written.is_file():
            assert API_KEY.encode() not in written.read_bytes(), written


def test_this_environment_holds_the_sdk_of_its_family() -> None:
    """A venv with the wrong SDK would test nothing: say so instead."""
    sdk: Any = importlib.import_module("stigg")
    installed = {
        "rest": hasattr(sdk, "AsyncStigg"),
        "graphql-v1": hasattr(sdk, "Stigg")
        and hasattr(sdk.Stigg, "create_client")
        and not hasattr(sdk, "AsyncStiggClient"),
        "graphql-v2": hasattr(sdk, "AsyncStiggClient"),
        "sidecar": importlib.util.find_spec("stigg_sidecar_sdk") is not None,
    }
    assert installed[family()], f"STIGG_SDK_FAMILY={family()} but its SDK is not installed"
    assert set(FAMILIES) == set(installed)
