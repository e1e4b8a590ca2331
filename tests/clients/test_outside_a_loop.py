"""Each client built in plain synchronous code, wrapped by the blocking ResilientClient.

Asyncio SDKs then run on a private loop thread of ours (the sidecar SDK's own
channel belongs to a loop nobody runs: we open our own on ours).
"""

from __future__ import annotations

import asyncio
import importlib
import threading
import time
from pathlib import Path
from typing import Any

from stigg_cache import ResilientClient, Source
from tests.clients.conftest import POLICY, World
from tests.conftest import API_KEY

WAIT_S = 15.0


def _inner(kind: str, world: World) -> Any:
    """The SDK client as a synchronous program builds it (``None``: the built-in client)."""
    fake = world.fake
    if kind.startswith("httpx"):
        return None
    if kind == "sidecar":
        from stigg_sidecar_sdk import ApiConfig, Stigg

        from stigg_cache.testing.sidecar import FakeSidecar

        world.sidecar = FakeSidecar(fake.account)
        # A fresh program's main thread has a default loop (earlier tests' asyncio.run left
        # none): the SDK's channel binds to it, and nobody runs it.
        asyncio.set_event_loop(asyncio.new_event_loop())
        config = ApiConfig(api_key=API_KEY, api_url=fake.graphql_url, edge_enabled=False)
        return Stigg(
            config, remote_sidecar_host=world.sidecar.host, remote_sidecar_port=world.sidecar.port
        )
    sdk: Any = importlib.import_module("stigg")
    if kind.startswith("rest"):
        factory = sdk.AsyncStigg if kind == "rest-async" else sdk.Stigg
        return factory(api_key=API_KEY, base_url=fake.url)
    make = sdk.Stigg.create_async_client if "async" in kind else sdk.Stigg.create_client
    return make(
        API_KEY,
        api_url=fake.graphql_url,
        enable_edge=kind.endswith("edge"),
        edge_api_url=fake.edge_url,
    )


def test_the_blocking_client_takes_it_built_outside_any_loop(
    client_kind: str, world: World, tmp_path: Path
) -> None:
    inner = _inner(client_kind, world)
    try:
        with ResilientClient(
            inner,
            api_key=API_KEY,
            base_url=world.fake.url,
            store=f"sqlite:///{tmp_path}/c.db",
            outbox=f"sqlite:///{tmp_path}/o.db",
            policy=POLICY,
        ) as client:
            deadline = time.monotonic() + WAIT_S
            while not _held(client):
                assert time.monotonic() < deadline, client.status()
                time.sleep(0.05)
            assert client.get_boolean_entitlement(customer_id="acme", feature_id="sso").has_access
            (event,) = client.report_event([{"customer_id": "acme", "event_name": "login"}])
            assert client.flush(timeout=WAIT_S).drained
    finally:
        if world.sidecar is not None:
            inner.close()
            world.sidecar.close()
            asyncio.get_event_loop().close()
            asyncio.set_event_loop(None)
    assert [e["idempotencyKey"] for e in world.fake.account.events] == [event.idempotency_key]
    assert "stigg-cache-loop" not in {t.name for t in threading.enumerate()}


def _held(client: ResilientClient) -> bool:
    decision = client.get_entitlements(customer_id="acme").decision
    return decision is not None and decision.source in (Source.LIVE, Source.CACHE)
