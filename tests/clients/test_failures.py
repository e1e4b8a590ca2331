"""What each client does when Stigg fails: one request per attempt, refusals set aside."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from stigg_cache import FailureKind, StiggUnavailableError
from stigg_cache.testing import ManualClock
from stigg_cache.testing.fake import FakeMode
from tests.clients.conftest import (
    BUILDERS,
    World,
    adapter_of,
    ask,
    failures_of_a_fetch_and_a_send,
    warm,
)

# Far below what an SDK left alone takes: 7.5 s (v2, a refused port), minutes (a trickle).
MARGIN_S = 2.0
DEADLINE_S = 0.5


def test_the_sdks_own_retries_are_cut_to_one_attempt(
    client_kind: str, world: World, tmp_path: Path
) -> None:
    async def story() -> None:
        async with BUILDERS[client_kind](world, ManualClock(), tmp_path) as client:
            await warm(client)  # connections are up, no fetch under way
            fetch = adapter_of(client).fetch_entitlements
            sidecar_calls = 0 if world.sidecar is None else len(world.sidecar.calls)
            world.set_mode(FakeMode.ERROR_5XX)
            with pytest.raises(StiggUnavailableError) as failed:
                await asyncio.to_thread(fetch, "acme", None, timeout_s=5)
            assert failed.value.kind is FailureKind.SERVER
            assert world.refused_requests() - sidecar_calls == 1

            world.set_mode(FakeMode.DOWN)
            started = time.monotonic()
            with pytest.raises(StiggUnavailableError) as refused:
                await asyncio.to_thread(fetch, "acme", None, timeout_s=5)
            assert refused.value.kind is FailureKind.CONNECTION, refused.value
            assert time.monotonic() - started < MARGIN_S
            world.set_mode(FakeMode.UP)

    asyncio.run(story())


def test_usage_stigg_refuses_is_set_aside_and_the_rest_delivered(
    client_kind: str, world: World, tmp_path: Path
) -> None:
    account = world.fake.account
    account.rejected_customers.add("banned")

    async def story() -> None:
        async with BUILDERS[client_kind](world, ManualClock(), tmp_path) as client:
            await ask(client.report_usage(customer_id="banned", feature_id="api_calls", value=1))
            kept = await ask(
                client.report_usage(customer_id="acme", feature_id="api_calls", value=2)
            )
            await ask(client.report_event([{"customer_id": "banned", "event_name": "login"}]))
            flushed = await ask(client.flush(timeout=15))
            assert flushed.drained, flushed
            dead = client.outbox.dead_letters()
            assert sorted(d.record.customer_id for d in dead) == ["banned", "banned"]
            assert all("rejected" in d.reason for d in dead), [d.reason for d in dead]
            assert [u["customerId"] for u in account.usages] == ["acme"]
            if client_kind != "sidecar":
                assert account.usages[0]["idempotencyKey"] == kept.idempotency_key

    asyncio.run(story())


def test_a_rate_limit_says_when_to_come_back(
    client_kind: str, world: World, tmp_path: Path
) -> None:
    async def story() -> None:
        async with BUILDERS[client_kind](world, ManualClock(), tmp_path) as client:
            await warm(client)
            world.set_mode(FakeMode.RATE_LIMITED, retry_after_s=7)
            asked = len(world.fake.log)
            failures = await failures_of_a_fetch_and_a_send(adapter_of(client))
            # Stigg's Retry-After travels over HTTP (the Edge API sends none); the sidecar's
            # gRPC status has none.
            said = [hint for _, _, _, status, hint in world.fake.log[asked:] if status == 429]
            expected = (
                [None, None]
                if client_kind == "sidecar"
                else [None if h is None else 7.0 for h in said]
            )
            for limited, hint in zip(failures, expected, strict=True):
                assert limited.kind is FailureKind.RATE_LIMITED, limited
                assert limited.retry_after_s == hint
            if client_kind.endswith("-edge") and client_kind.startswith("graphql-v1"):
                assert expected[0] is None  # the fetch read from the Edge API
            world.set_mode(FakeMode.UP)

    asyncio.run(story())


def test_an_answer_that_never_finishes_is_abandoned_at_the_call_deadline(
    client_kind: str, world: World, tmp_path: Path
) -> None:
    """A trickled body beats per-read timeouts (the SDKs' only kind); the call's deadline holds."""

    async def story() -> float:
        async with BUILDERS[client_kind](world, ManualClock(), tmp_path) as client:
            await warm(client)
            fetch = adapter_of(client).fetch_entitlements
            # gRPC has no trickle here: a sidecar that never answers stands for it
            world.set_mode(FakeMode.BLACKHOLE if client_kind == "sidecar" else FakeMode.TRICKLE)
            started = time.monotonic()
            with pytest.raises(StiggUnavailableError) as slow:
                await asyncio.to_thread(fetch, "acme", None, timeout_s=DEADLINE_S)
            elapsed = time.monotonic() - started
            assert slow.value.kind is FailureKind.TIMEOUT, slow.value
            world.set_mode(FakeMode.UP)
            return elapsed

    assert asyncio.run(story()) < DEADLINE_S + MARGIN_S  # the body alone would take minutes
