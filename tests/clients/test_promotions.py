"""Promotional entitlements through every client: they reach Stigg and drop the cached snapshot."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

from stigg_cache import Source
from stigg_cache.testing import ManualClock
from tests.clients.conftest import BUILDERS, World, ask, until, warm


def test_promotions_reach_stigg_and_drop_the_cached_snapshot(
    client_kind: str, world: World, tmp_path: Path
) -> None:
    async def story() -> None:
        async with BUILDERS[client_kind](world, ManualClock(), tmp_path) as client:

            def reports(expected: bool) -> Callable[[], Awaitable[bool]]:
                async def from_stigg() -> bool:  # not the policy's default: Stigg's snapshot
                    answer = await ask(
                        client.get_boolean_entitlement(customer_id="acme", feature_id="reports")
                    )
                    fresh = answer.decision.source in (Source.LIVE, Source.CACHE)
                    return bool(fresh and answer.has_access is expected)

                return from_stigg

            await warm(client)
            assert await reports(expected=False)()
            granted = await ask(
                client.grant_promotional_entitlements(
                    "acme", [{"feature_id": "reports", "period": "1 month"}]
                )
            )
            assert [g["featureId"] for g in granted] == ["reports"]
            await until(reports(expected=True), "the grant in Stigg's answer")
            await ask(client.revoke_promotional_entitlement("acme", "reports"))
            await until(reports(expected=False), "the revocation in Stigg's answer")

    asyncio.run(story())
