"""Promotional entitlements through every client: they reach Stigg and drop the cached snapshot."""

from __future__ import annotations

import asyncio
from pathlib import Path

from stigg_cache import Source
from stigg_cache.testing import ManualClock
from tests.clients.conftest import BUILDERS, World, ask


def test_promotions_reach_stigg_and_drop_the_cached_snapshot(
    client_kind: str, world: World, tmp_path: Path
) -> None:
    async def story() -> None:
        async with BUILDERS[client_kind](world, ManualClock(), tmp_path) as client:

            async def reports() -> tuple[bool, Source]:
                answer = await ask(
                    client.get_boolean_entitlement(customer_id="acme", feature_id="reports")
                )
                return answer.has_access, answer.decision.source

            assert (await reports())[0] is False
            granted = await ask(
                client.grant_promotional_entitlements(
                    "acme", [{"feature_id": "reports", "period": "1 month"}]
                )
            )
            assert [g["featureId"] for g in granted] == ["reports"]
            assert await reports() == (True, Source.LIVE)
            await ask(client.revoke_promotional_entitlement("acme", "reports"))
            assert await reports() == (False, Source.LIVE)

    asyncio.run(story())
