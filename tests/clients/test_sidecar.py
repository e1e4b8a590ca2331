"""The sidecar SDK's particulars: its fallback answers, and usage mapped onto its messages."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from stigg_cache import AsyncResilientClient, ConnectionState, Source
from stigg_cache.testing import ManualClock
from stigg_cache.testing.fake import FakeStigg, boolean
from tests.clients.conftest import BUILDERS, World, ask, until, warm


def test_an_answer_from_the_sidecars_fallback_is_not_taken_for_stiggs(
    world: World, tmp_path: Path
) -> None:
    async def story() -> None:
        clock = ManualClock()
        async with BUILDERS["sidecar"](world, clock, tmp_path) as client:
            assert isinstance(client, AsyncResilientClient)
            await warm(client)
            world.sidecar.from_fallback = True
            clock.advance(120)
            stale = await client.get_boolean_entitlement(customer_id="acme", feature_id="sso")
            assert stale.decision.source is Source.STALE

            async def policy_because_of_the_fallback() -> bool:
                cold = await client.get_boolean_entitlement(customer_id="newco", feature_id="sso")
                assert (cold.decision.source, cold.decision.rule) == (Source.POLICY, "newcomers")
                return "fallback" in (cold.decision.reason or "")  # not the budget running out

            await until(policy_because_of_the_fallback, "the sidecar's fallback named")

            async def counted() -> bool:  # status() has the store counted in the background
                return client.status().snapshots_held is not None

            await until(counted, "the store's snapshots counted")
            assert client.status().snapshots_held == 1  # nothing of the fallback was cached

    asyncio.run(story())


def test_an_entitlement_of_no_known_kind_is_an_unusable_answer() -> None:
    from stigg_sidecar_sdk import ApiConfig, EntitlementV2, Stigg

    from stigg_cache import StiggUnavailableError
    from stigg_cache.adapters.sidecar import SidecarAdapter

    async def check() -> None:  # grpclib binds the SDK's channel to the running loop
        inner = Stigg(ApiConfig(api_key="k"), remote_sidecar_host="127.0.0.1")  # never dialled
        try:
            adapter = SidecarAdapter(inner)
            with pytest.raises(StiggUnavailableError, match="no known kind"):
                adapter._item(EntitlementV2(has_access=True))
        finally:
            inner.close()
            await inner.api.http_client.aclose()

    asyncio.run(check())


def test_the_pytest_plugin_serves_a_fake_sidecar(fake_stigg: FakeStigg, fake_sidecar: Any) -> None:
    from stigg_sidecar_sdk import ApiConfig, GetEntitlementsStateV2Request, Stigg

    fake_stigg.set_customer("acme", [boolean("sso")])

    async def states() -> list[bool]:
        inner = Stigg(
            ApiConfig(api_key="k"),
            remote_sidecar_host=fake_sidecar.host,
            remote_sidecar_port=fake_sidecar.port,
        )
        try:
            answer = await inner.get_entitlements_state_v2(
                GetEntitlementsStateV2Request(customer_id="acme"), timeout=5
            )
            return [e.has_access for e in answer.entitlements]
        finally:
            inner.close()
            await inner.api.http_client.aclose()

    assert asyncio.run(states()) == [True]


def test_a_resource_the_sidecar_does_not_know_is_stiggs_answer_not_an_outage(
    world: World, tmp_path: Path
) -> None:
    """The sidecar's customer-level denial is any ``AccessDeniedReason``: for a resource it
    does not know, ``CustomerResourceNotFound``, a proper answer (denied, LIVE, Stigg up)."""
    world.fake.set_customer(
        "acme", [], resource_id="gone", access_denied_reason="CustomerResourceNotFound"
    )

    async def story() -> None:
        async with BUILDERS["sidecar"](world, ManualClock(), tmp_path) as client:
            await warm(client)  # the channel open, Stigg known to be up
            denied = await ask(
                client.get_boolean_entitlement(
                    customer_id="acme", feature_id="sso", resource_id="gone"
                )
            )
            assert (denied.has_access, denied.access_denied_reason, denied.decision.source) == (
                False,
                "CustomerResourceNotFound",
                Source.LIVE,
            )
            assert (client.status().state, client.status().last_error) == (
                ConnectionState.CONNECTED,
                None,
            )

    asyncio.run(story())
