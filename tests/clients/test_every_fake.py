"""One account through every fake Stigg (REST, GraphQL with Edge on and off, the sidecar):
each client answers every check alike, so a test of one family tests the same Stigg."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import attrs

from stigg_cache.testing import ManualClock
from stigg_cache.testing.fake import boolean, enum_feature, metered, numeric
from tests.clients.conftest import BUILDERS, World, ask, warm

# The sidecar SDK's venv holds the GraphQL v2 SDK too (its .api): every fake is reachable.
CLIENTS = ("httpx", "graphql-v2-edge", "graphql-v2", "sidecar")
FEATURES = ("sso", "seats", "api_calls", "tokens", "storage", "models", "revoked")


def _account(world: World) -> None:
    soft = attrs.evolve(metered("tokens", limit=100, usage=140), has_soft_limit=True)
    world.fake.set_customer(
        "acme",
        [
            boolean("sso"),
            numeric("seats", 25),
            metered("api_calls", limit=100, usage=40),
            soft,  # over its soft limit: Stigg still grants
            metered("storage", limit=None, usage=7, unlimited=True),
            enum_feature("models", ["gpt-4", "claude"]),
            boolean("revoked", granted=False),
        ],
    )
    world.fake.set_customer("lapsed", [], access_denied_reason="NoActiveSubscription")


async def _answers(client: Any) -> list[dict[str, Any]]:
    answers = []
    for customer in ("acme", "lapsed", "nobody"):
        await warm(client, customer)
        for feature in FEATURES:
            checks = [client.get_entitlement(customer_id=customer, feature_id=feature)]
            checks += [
                client.get_metered_entitlement(
                    customer_id=customer, feature_id=feature, requested_usage=requested
                )
                for requested in (1, 70)
                if feature in ("api_calls", "tokens", "storage")
            ]
            for check in checks:
                answer = attrs.asdict(await ask(check), recurse=False)
                del answer["decision"]
                answers.append(answer)
    return answers


def test_every_fake_answers_one_account_alike(world: World, tmp_path: Path) -> None:
    _account(world)

    async def through(kind: str) -> list[dict[str, Any]]:
        async with BUILDERS[kind](world, ManualClock(), tmp_path / kind) as client:
            return await _answers(client)

    async def every() -> dict[str, list[dict[str, Any]]]:
        return {kind: await through(kind) for kind in CLIENTS}

    answers = asyncio.run(every())
    soft = [
        a for a in answers["httpx"] if a["feature_id"] == "tokens" and a["customer_id"] == "acme"
    ]
    assert [a["has_access"] for a in soft] == [True, True, True]  # past its soft limit
    for kind in CLIENTS[1:]:
        assert answers[kind] == answers["httpx"], kind
