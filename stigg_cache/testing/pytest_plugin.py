"""pytest fixtures for your own outage tests (registered as the ``stigg_cache`` plugin).

    def test_checks_survive_a_blackhole(fake_stigg, fault_proxy):
        fake_stigg.set_customer("acme", [boolean("sso")])
        client = ResilientClient(None, api_key=fake_stigg.api_key, base_url=fault_proxy.url, ...)
        client.get_boolean_entitlement(customer_id="acme", feature_id="sso")   # warm
        fault_proxy.set(blackhole=True)
        ...

GraphQL SDKs point at ``fake_stigg.graphql_url`` and ``fake_stigg.edge_url`` (or the
proxy's ``url`` + ``/graphql`` and ``/edge``; the GraphQL endpoint needs the ``[testing]``
extra); the sidecar SDK at ``fake_sidecar.host``
and ``fake_sidecar.port`` (needs the ``[sidecar]`` extra). All listen on 127.0.0.1 only
and close (releasing every hung request) after the test.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from stigg_cache.testing.fake import FakeStigg
from stigg_cache.testing.proxy import FaultProxy
from stigg_cache.testing.sidecar import FakeSidecar

FAKE_API_KEY = "sk-fake-stigg-test-key"


@pytest.fixture
def fake_stigg() -> Iterator[FakeStigg]:
    """A fake Stigg on loopback (API key ``FAKE_API_KEY``); add customers with ``set_customer``."""
    with FakeStigg(api_key=FAKE_API_KEY) as fake:
        yield fake


@pytest.fixture
def fault_proxy(fake_stigg: FakeStigg) -> Iterator[FaultProxy]:
    """A fault proxy in front of ``fake_stigg``: point the client at ``fault_proxy.url``."""
    with FaultProxy.to(fake_stigg.url) as proxy:
        yield proxy


@pytest.fixture
def fake_sidecar(fake_stigg: FakeStigg) -> Iterator[FakeSidecar]:
    """A fake Stigg sidecar (gRPC) serving ``fake_stigg``'s customers and taking its usage."""
    with FakeSidecar(fake_stigg.account) as sidecar:
        yield sidecar
