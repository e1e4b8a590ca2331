"""What the HTTP clients make of answers that are not Stigg's (the sidecar speaks gRPC)."""

from __future__ import annotations

import asyncio
import tracemalloc
from collections.abc import Awaitable, Callable
from pathlib import Path

from stigg_cache import FailureKind, Snapshot, Source, StiggUnavailableError
from stigg_cache.adapters.base import MAX_RESPONSE_BYTES, reads_per_minute
from stigg_cache.testing import ManualClock
from stigg_cache.testing.fake import BOMB_DECODED_BYTES, FakeMode, bomb
from tests.clients.conftest import (
    BUILDERS,
    AnyClient,
    World,
    adapter_of,
    ask,
    failures_of_a_fetch_and_a_send,
    outcomes_of_a_fetch_and_a_send,
    until,
    warm,
)


def _run(
    client_kind: str, world: World, tmp_path: Path, story: Callable[[AnyClient], Awaitable[None]]
) -> None:
    """``story`` with a client of ``client_kind`` talking to ``world``, on an event loop."""

    async def run() -> None:
        async with BUILDERS[client_kind](world, ManualClock(), tmp_path) as client:
            await story(client)

    asyncio.run(run())


def test_a_body_that_is_not_json_is_an_unusable_answer(
    client_kind: str, world: World, tmp_path: Path
) -> None:
    async def story(client: AnyClient) -> None:
        await warm(client)
        world.set_mode(FakeMode.GARBAGE)
        for garbage in await failures_of_a_fetch_and_a_send(adapter_of(client)):
            assert garbage.kind is FailureKind.INVALID_RESPONSE, garbage
        world.set_mode(FakeMode.UP)

    _run(client_kind, world, tmp_path, story)


def test_a_gzipped_answer_is_read_and_acknowledges(
    client_kind: str, world: World, tmp_path: Path
) -> None:
    """Stigg gzips what a client accepts: every client asks for gzip and reads it."""

    async def story(client: AnyClient) -> None:
        world.fake.gzip_answers = True
        fetched, sent = await outcomes_of_a_fetch_and_a_send(adapter_of(client))
        assert isinstance(fetched, Snapshot), fetched
        assert fetched.entitlements["api_calls"].current_usage == 40
        assert not isinstance(sent, Exception), sent
        assert world.fake.counts["gzipped"] == 3  # the entitlements, the plans, the events

    _run(client_kind, world, tmp_path, story)


def test_a_decompression_bomb_is_refused_before_it_fills_memory(
    client_kind: str, world: World, tmp_path: Path
) -> None:
    """286 bytes that inflate (gzip in gzip) to 64 MiB: the 8 MiB cap counts decoded bytes,
    so a read or a send holds about 8 MiB of it, then refuses it as no answer."""

    async def story(client: AnyClient) -> None:
        await warm(client)
        world.set_mode(FakeMode.BOMB)
        bomb()  # the fake's own copy is built before measuring
        tracemalloc.start()
        try:
            outcomes = await outcomes_of_a_fetch_and_a_send(adapter_of(client))
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert world.fake.counts["GET bomb"] + world.fake.counts["POST bomb"] == 2
        # the cap, the answer joined once, and room for the SDK's own work
        assert peak < 2 * MAX_RESPONSE_BYTES + 4 * 1024 * 1024 < BOMB_DECODED_BYTES, (
            f"{peak / 2**20:.1f} MiB held; {outcomes}"
        )
        for outcome in outcomes:
            assert isinstance(outcome, StiggUnavailableError), outcome
            assert outcome.kind is FailureKind.INVALID_RESPONSE, outcome
        world.set_mode(FakeMode.UP)

    _run(client_kind, world, tmp_path, story)


def test_a_redirect_is_a_fault_never_an_acknowledgement(
    client_kind: str, world: World, tmp_path: Path
) -> None:
    """Every answer is 308 with ``{"data": {}}``: no read takes it for an answer, no send
    for an acknowledgement, and nobody follows it (the API key would go along)."""

    async def story(client: AnyClient) -> None:
        await warm(client)
        world.set_mode(FakeMode.REDIRECT)
        for failure in await failures_of_a_fetch_and_a_send(adapter_of(client)):
            assert failure.kind is FailureKind.INVALID_RESPONSE, failure
            assert "308" in str(failure)
        await ask(client.report_usage(customer_id="acme", feature_id="api_calls", value=3))

        async def settled() -> bool:
            status = await ask(client.status())
            return status.outbox_depth == 0 or "308" in (status.last_error or "")

        await until(settled, "the usage send answered 308")
        status = await ask(client.status())
        assert (status.outbox_depth, status.dead_letters) == (1, 0), status
        redirected = world.fake.counts["GET redirect"] + world.fake.counts["POST redirect"]
        assert redirected == 3  # the read and the event above, then the usage: once each
        followed = [path for _, _, path, _, _ in world.fake.log if path.startswith("/moved")]
        assert followed == []
        world.set_mode(FakeMode.UP)

    _run(client_kind, world, tmp_path, story)


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
            # a fetch is two Edge reads (the state and the subscriptions): half the budget
            assert reads_per_minute(adapter_of(client)) == (3000.0 if edge else None)
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
