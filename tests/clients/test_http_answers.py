"""What the HTTP clients make of answers that are not Stigg's (the sidecar speaks gRPC)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from stigg_cache import FailureKind, StiggUnavailableError
from stigg_cache.chaos.fake import FakeMode
from stigg_cache.testing import ManualClock
from tests.clients.conftest import BUILDERS, World, adapter_of, warm

_EVENT = {"customerId": "acme", "eventName": "login", "idempotencyKey": "garbage-1"}


def test_a_body_that_is_not_json_is_an_unusable_answer(
    client_kind: str, world: World, tmp_path: Path
) -> None:
    async def story() -> None:
        async with BUILDERS[client_kind](world, ManualClock(), tmp_path) as client:
            await warm(client)
            adapter = adapter_of(client)
            world.set_mode(FakeMode.GARBAGE)
            for send in (
                lambda: adapter.fetch_entitlements("acme", None, timeout_s=5),
                lambda: adapter.report_events([_EVENT], timeout_s=5),
            ):
                with pytest.raises(StiggUnavailableError) as garbage:
                    await asyncio.to_thread(send)
                assert garbage.value.kind is FailureKind.INVALID_RESPONSE, garbage.value
            world.set_mode(FakeMode.UP)

    asyncio.run(story())
