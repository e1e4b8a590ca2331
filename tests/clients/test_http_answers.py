"""What the HTTP clients make of answers that are not Stigg's (the sidecar speaks gRPC)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

from stigg_cache import FailureKind, Source
from stigg_cache.adapters.base import reads_per_minute
from stigg_cache.testing import ManualClock
from stigg_cache.testing.fake import FakeMode
from tests.clients.conftest import (
    BUILDERS,
    World,
    adapter_of,
    ask,
    failures_of_a_fetch_and_a_send,
    until,
    warm,
)


def test_a_body_that_is_not_json_is_an_unusable_answer(
    client_kind: str, world: World, tmp_path: Path
) -> None:
    async def story() -> None:
        async with BUILDERS[client_kind](world, ManualClock(), tmp_path) as client:
            await warm(client)
            world.set_mode(FakeMode.GARBAGE)
            for garbage in await failures_of_a_fetch_and_a_send(adapter_of(client)):
                assert garbage.kind is FailureKind.INVALID_RESPONSE, garbage
            world.set_mode(FakeMode.UP)

    asyncio.run(story())


def _requests(world: World) -> int:
    return len(world.fake.log)


def test_a_429_on_a_read_pauses_reads_on_a_schedule_and_never_opens_the_breaker(
    client_kind: str, world: World, tmp_path: Path
) -> None:
    """Stigg's Edge API answers 429 without Retry-After, and its 6,000 reads a minute are
    the account's: edge clients pace reads to it, and every client backs off on a 429."""
    clock = ManualClock()

    async def story() -> None:
        async with BUILDERS[client_kind](world, clock, tmp_path) as client:
            edge = client_kind.endswith("-edge")
            assert reads_per_minute(adapter_of(client)) == (6000.0 if edge else None)
            await warm(client)
            world.set_mode(FakeMode.RATE_LIMITED, retry_after_s=1.0)
            await ask(client.get_boolean_entitlement(customer_id="new-1", feature_id="sso"))
            await until(_throttled(world), "a read refused with 429")
            asked = _requests(world)
            for n in range(2, 7):  # paused: answered from the policy, Stigg is not asked
                answer = await ask(
                    client.get_boolean_entitlement(customer_id=f"new-{n}", feature_id="sso")
                )
                assert answer.decision.source is Source.POLICY
                assert "read budget" in (answer.decision.reason or "")
            assert _requests(world) == asked
            assert (await ask(client.status())).breaker == "closed"
            world.set_mode(FakeMode.UP)
            clock.advance(120)  # past any pause: Retry-After, or our backoff (at most 60 s)

            async def live() -> bool:
                answer = await ask(
                    client.get_boolean_entitlement(customer_id="new-7", feature_id="sso")
                )
                return answer.decision.source is Source.LIVE

            await until(live, "reads resumed")

    asyncio.run(story())


def _throttled(world: World) -> Callable[[], Awaitable[bool]]:
    async def seen() -> bool:
        return any(status == 429 for _, _, _, status, _ in world.fake.log)

    return seen
