"""What the HTTP clients make of answers that are not Stigg's (the sidecar speaks gRPC)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from stigg_cache import FailureKind
from stigg_cache.chaos.fake import FakeMode
from stigg_cache.testing import ManualClock
from tests.clients.conftest import BUILDERS, World, adapter_of, failures_of_a_fetch_and_a_send, warm


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
