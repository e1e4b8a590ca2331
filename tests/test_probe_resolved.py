"""A half-open probe is always resolved, by Stigg's answer or a sibling's (#28 item 1).

After an outage a worker's probe may be satisfied by the snapshot a sibling worker
just fetched into the shared store: that is Stigg answering too, so the breaker
closes. Before, the worker never heard a verdict and stayed half-open for good,
answering every new customer from the fallback while Stigg was up.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest

from stigg_cache import (
    AsyncResilientClient,
    BooleanEntitlement,
    BreakerState,
    CircuitBreaker,
    ResilientClient,
    Source,
)
from stigg_cache.testing.fake import FakeMode, FakeStigg, boolean
from tests.conftest import API_KEY, POLICY
from tests.forking import child_result, fork_child
from tests.helpers import eventually

SIBLING_WAIT_S = 20.0  # the time a worker waits for a sibling: room for a loaded machine
NEW_CUSTOMER_CHECKS = 5

Client = ResilientClient | AsyncResilientClient


def _client(fake: FakeStigg, tmp_path: Path, *, asynchronous: bool) -> Client:
    make: Any = AsyncResilientClient if asynchronous else ResilientClient
    return make(  # type: ignore[no-any-return]
        None,
        api_key=API_KEY,
        base_url=fake.url,
        store=f"sqlite:///{tmp_path}/cache.db",
        policy=POLICY,
        check_timeout=2 * SIBLING_WAIT_S,  # a flight waits half of it for a sibling
        fetch_timeout=SIBLING_WAIT_S,
        breaker=CircuitBreaker(failure_threshold=1, base_backoff_s=0.05, max_backoff_s=0.05),
    )


def _check(client: Client, customer_id: str) -> BooleanEntitlement:
    if isinstance(client, AsyncResilientClient):
        return asyncio.run(
            client.get_boolean_entitlement(customer_id=customer_id, feature_id="sso")
        )
    return client.get_boolean_entitlement(customer_id=customer_id, feature_id="sso")


def _core(client: Client) -> ResilientClient:
    return client._core if isinstance(client, AsyncResilientClient) else client


def _lease_held(client: Client, customer_id: str) -> bool:
    """Whether a worker holds the refresh lease of a customer (it is asking Stigg)."""
    # A lease taken by nobody for no time: refused while a worker's is held, harmless if not.
    return _core(client)._runtime.parts.cache.lease((customer_id, None), "observer", 0.0) is False


def _waiting_on_a_sibling(client: Client) -> bool:
    flights = list(_core(client)._runtime.parts.fetcher._flights.values())
    return any(flight.on_sibling for flight in flights)


@pytest.mark.parametrize("asynchronous", [False, True], ids=["threads", "event-loop"])
def test_a_probe_answered_by_a_siblings_refresh_closes_the_breaker(
    fake: FakeStigg, tmp_path: Path, asynchronous: bool
) -> None:
    fake.set_customer("beta", [boolean("sso")])
    client = _client(fake, tmp_path, asynchronous=asynchronous)
    health = _core(client)._runtime.parts.health
    fake.set_mode(FakeMode.DOWN)
    assert _check(client, "acme").decision.source is Source.DEFAULT  # the breaker opens
    assert health.breaker_state.value == "open"  # (a value: mypy would keep the narrowing)
    eventually(lambda: not health.offline)  # its backoff has passed: a probe is due
    # Stigg is back, slowly: a forked worker's refresh of acme holds the lease meanwhile.
    fake.set_mode(FakeMode.SLOW, delay_s=2 * SIBLING_WAIT_S)
    sibling = fork_child(lambda: _check(client, "acme").decision.source.value)
    eventually(lambda: _lease_held(client, "acme"))
    probe = threading.Thread(target=_check, args=(client, "acme"))
    probe.start()  # this worker's probe finds the lease held and waits for the sibling
    eventually(lambda: _waiting_on_a_sibling(client))
    fake.set_mode(FakeMode.UP)  # the sibling's answer arrives; it stores acme
    assert child_result(sibling) == Source.LIVE.value
    probe.join(2 * SIBLING_WAIT_S)
    sources = [_check(client, "beta").decision.source for _ in range(NEW_CUSTOMER_CHECKS)]
    assert sources.count(Source.DEFAULT) == 0, (health.breaker_state, sources)
    assert health.breaker_state is BreakerState.CLOSED
    assert sources[0] is Source.LIVE
    if isinstance(client, AsyncResilientClient):
        asyncio.run(client.aclose())
    else:
        client.close()
