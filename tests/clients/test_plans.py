"""``plans:`` rules match the plans of the customer's active subscriptions, read from Stigg
with its entitlements and stored (signed) with the snapshot, by every client that can know
them; the sidecar, whose protocol carries no plan, says once that such rules cannot match."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from stigg_cache import FallbackPolicy, Source
from stigg_cache.testing import ManualClock
from stigg_cache.testing.fake import FakeMode, boolean
from tests.clients.conftest import BUILDERS, World, ask, warm

PLANS_POLICY = FallbackPolicy.from_yaml(
    """version: 1
staleness: {fresh_for: 60s, max_staleness: 1h}
rules:
  - name: enterprise
    match: {plans: [plan-ent-*]}
    grant: {reports: {has_access: true}}
default: {has_access: false}
"""
)
SIGNING_KEY = "plans-are-signed-with-the-snapshot-0123456789"


def _account(world: World) -> None:
    world.fake.set_customer("acme", [boolean("sso")], plans=["plan-ent-gold"])
    world.fake.account.subscribe("acme", "plan-basic", status="CANCELED")  # not active
    world.fake.set_customer("smallco", [boolean("sso")], plans=["plan-basic"])
    world.options.update(policy=PLANS_POLICY, signing_key=SIGNING_KEY)


async def _held_plans(
    world: World, kind: str, clock: ManualClock, tmp_path: Path
) -> list[tuple[str, ...]]:
    """A first client's snapshots of both customers: their plan ids, as fetched and stored."""
    held = []
    async with BUILDERS[kind](world, clock, tmp_path) as client:
        for customer in ("acme", "smallco"):
            await warm(client, customer)
            snapshot = await ask(client.get_entitlements(customer_id=customer))
            held.append(snapshot.plan_ids)
        reads = world.fake.account.subscription_reads
        await warm(client, "nobody")  # CustomerNotFound: on no plan, nothing more to read
        assert world.fake.account.subscription_reads == reads
    return held


async def _offline_answers(
    world: World, kind: str, clock: ManualClock, tmp_path: Path
) -> list[tuple[Source, bool, str | None]]:
    """A second client over the same store, Stigg down and the snapshots long expired:
    the policy answers ``reports``, its rules given the plans the snapshots hold."""
    answers = []
    async with BUILDERS[kind](world, clock, tmp_path) as client:
        world.set_mode(FakeMode.DOWN)
        clock.advance(2 * 3600)  # past max_staleness: only the plans are still of use
        for customer in ("acme", "smallco"):
            answer = await ask(
                client.get_boolean_entitlement(customer_id=customer, feature_id="reports")
            )
            answers.append((answer.decision.source, answer.has_access, answer.decision.rule))
    return answers


def test_plans_rules_match_the_plans_of_active_subscriptions(
    world: World, client_kind: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _account(world)
    clock = ManualClock()
    caplog.set_level(logging.WARNING, logger="stigg_cache")
    held = asyncio.run(_held_plans(world, client_kind, clock, tmp_path))
    answers = asyncio.run(_offline_answers(world, client_kind, clock, tmp_path))
    warned = [r.getMessage() for r in caplog.records if "plans_unknown" in r.getMessage()]
    if client_kind == "sidecar":  # its protocol carries no plan
        assert held == [(), ()]
        assert answers == [(Source.DEFAULT, False, "default")] * 2
        assert len(warned) == 2  # once by each client
        assert "rules enterprise match plans, which the stigg-sidecar client cannot" in warned[0]
        return
    assert held == [("plan-ent-gold",), ("plan-basic",)]
    assert answers == [(Source.POLICY, True, "enterprise"), (Source.DEFAULT, False, "default")]
    assert warned == []
