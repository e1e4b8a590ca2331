"""Concurrent misses for one customer share one request to Stigg."""

from __future__ import annotations

import threading

from stigg_cache import Source
from stigg_cache.chaos.fake import FakeMode, FakeStigg
from tests.conftest import MakeClient

THREADS = 24


def test_concurrent_misses_for_one_customer_make_one_request(
    fake: FakeStigg, make_client: MakeClient
) -> None:
    client = make_client(check_timeout=2.0)
    fake.set_mode(FakeMode.SLOW, delay_s=0.3)
    barrier = threading.Barrier(THREADS)
    sources: list[Source] = []

    def check() -> None:
        barrier.wait()
        result = client.get_boolean_entitlement(customer_id="acme", feature_id="sso")
        sources.append(result.decision.source)

    threads = [threading.Thread(target=check) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sources.count(Source.LIVE) + sources.count(Source.CACHE) == THREADS
    assert fake.entitlement_requests() == 1


def test_different_customers_are_fetched_separately(
    fake: FakeStigg, make_client: MakeClient
) -> None:
    client = make_client()
    for customer in ("acme", "globex", "initech"):
        client.get_boolean_entitlement(customer_id=customer, feature_id="sso")
    client.get_boolean_entitlement(customer_id="acme", feature_id="sso", resource_id="r-1")
    assert fake.entitlement_requests() == 4
