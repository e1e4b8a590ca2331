"""Every client gives the same answers for the same Stigg data: each kind of feature, resources, unknown customers."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

from stigg_cache import Source
from stigg_cache.outbox.sqlite import SqliteOutbox
from stigg_cache.testing import ManualClock
from stigg_cache.testing.fake import boolean, enum_feature, metered, numeric
from tests.clients.conftest import BUILDERS, World, ask, warm


def test_each_kind_of_feature_reads_the_same_through_every_client(
    client_kind: str, world: World, tmp_path: Path
) -> None:
    fake = world.fake
    fake.set_customer(
        "acme",
        [
            boolean("sso"),
            boolean("audit", granted=False),
            numeric("seats", 25),
            metered("api_calls", limit=100, usage=40),
            enum_feature("models", ["gpt-4", "claude"]),
        ],
    )
    fake.set_customer("acme", [boolean("reports")], resource_id="workspace-1")

    async def story() -> None:
        async with BUILDERS[client_kind](world, ManualClock(), tmp_path) as client:
            await warm(client)
            snapshot = await ask(client.get_entitlements(customer_id="acme"))
            assert sorted(snapshot.entitlements) == ["api_calls", "audit", "models", "seats", "sso"]
            sso = await ask(client.get_boolean_entitlement(customer_id="acme", feature_id="sso"))
            audit = await ask(
                client.get_boolean_entitlement(customer_id="acme", feature_id="audit")
            )
            seats = await ask(
                client.get_numeric_entitlement(customer_id="acme", feature_id="seats")
            )
            calls = await ask(
                client.get_metered_entitlement(
                    customer_id="acme", feature_id="api_calls", requested_usage=61
                )
            )
            models = await ask(
                client.get_enum_entitlement(
                    customer_id="acme", feature_id="models", requested_values=["claude"]
                )
            )
            assert (sso.has_access, sso.decision.source) == (True, Source.CACHE)
            assert audit.has_access is False
            assert (seats.value, seats.is_unlimited) == (25, False)
            assert (calls.has_access, calls.current_usage, calls.usage_limit) == (False, 40, 100)
            assert calls.access_denied_reason == "RequestedUsageExceedingLimit"
            assert calls.reset_period == "MONTH"
            assert (models.has_access, models.enum_values) == (True, ("gpt-4", "claude"))

            await warm(client, "acme", "workspace-1")
            scoped = await ask(
                client.get_boolean_entitlement(
                    customer_id="acme", feature_id="reports", resource_id="workspace-1"
                )
            )
            assert (scoped.has_access, scoped.resource_id) == (True, "workspace-1")

            await warm(client, "ghost")
            ghost = await ask(client.get_boolean_entitlement(customer_id="ghost", feature_id="sso"))
            assert (ghost.has_access, ghost.access_denied_reason) == (False, "CustomerNotFound")
            assert ghost.decision.source is Source.CACHE

    asyncio.run(story())


def test_usage_and_events_keep_their_fields_through_every_client(
    client_kind: str, world: World, tmp_path: Path
) -> None:
    """SET, dimensions (text, number, flag), the stamped time and the resource reach Stigg as given."""
    world.fake.set_customer("acme", [metered("api_calls", limit=100, usage=40)], resource_id="ws-1")
    moment = (datetime.now(UTC) - timedelta(hours=1)).replace(microsecond=0)
    dimensions: dict[str, str | float | bool] = {"plan": "pro", "tokens": 812.0, "cached": True}

    async def story() -> None:
        async with BUILDERS[client_kind](world, ManualClock(), tmp_path) as client:
            usage = await ask(
                client.report_usage(
                    customer_id="acme",
                    feature_id="api_calls",
                    value=7,
                    update_behavior="SET",
                    resource_id="ws-1",
                    dimensions=dimensions,
                    created_at=moment,
                )
            )
            (event,) = await ask(
                client.report_event(
                    [
                        {
                            "customer_id": "acme",
                            "event_name": "login",
                            "dimensions": dimensions,
                            "timestamp": moment,
                            "resource_id": "ws-1",
                        }
                    ]
                )
            )
            assert (await ask(client.flush(timeout=15))).drained
        account = world.fake.account
        (sent_usage,) = account.usages
        assert (sent_usage["value"], sent_usage["updateBehavior"]) == (7, "SET")
        assert (sent_usage["resourceId"], sent_usage["dimensions"]) == ("ws-1", dimensions)
        assert datetime.fromisoformat(sent_usage["createdAt"]) == moment
        if client_kind != "sidecar":  # its ReportUsage has no idempotency key
            assert sent_usage["idempotencyKey"] == usage.idempotency_key
        (sent_event,) = account.events
        assert (sent_event["idempotencyKey"], sent_event["resourceId"]) == (
            event.idempotency_key,
            "ws-1",
        )
        assert sent_event["dimensions"] == dimensions
        assert datetime.fromisoformat(sent_event["timestamp"]) == moment
        assert account.usage_of("acme", "api_calls", "ws-1") == 7

    asyncio.run(story())


def test_stiggs_count_of_reported_usage_is_kept_with_it_through_every_client(
    client_kind: str, world: World, tmp_path: Path
) -> None:
    """Stigg answers a usage report with the feature's usage counting it: every process
    settles the record on that evidence (DESIGN §8), so every client must pass it on."""
    world.fake.account.aggregation_delay_s = 3600.0  # reads will not show it for long

    async def story() -> None:
        async with BUILDERS[client_kind](world, ManualClock(), tmp_path) as client:
            await ask(client.report_usage(customer_id="acme", feature_id="api_calls", value=10))
            assert (await ask(client.flush(timeout=15))).drained

    asyncio.run(story())
    outbox = SqliteOutbox(tmp_path / "outbox.db")
    (held,) = outbox.changes(-1).held
    outbox.close()
    assert (held.record.value, held.acked_at is not None, held.counted) == (10.0, True, 50.0)
