"""Store faults injected at the N-th operation: checks never raise, status tells, recovery is automatic."""

from __future__ import annotations

from pathlib import Path

import pytest

from stigg_cache import ResilientClient, Source
from stigg_cache.stores import open_store
from stigg_cache.testing import runtime_of
from stigg_cache.testing.conformance import StoreConformance
from stigg_cache.testing.fake import FakeMode, FakeStigg
from stigg_cache.testing.faulty import FaultyStore
from tests.conftest import API_KEY, POLICY
from tests.helpers import eventually


class TestHealthyFaultyStore(StoreConformance):
    def make_store(self, base: Path) -> FaultyStore:
        return FaultyStore(open_store(f"sqlite:///{base}/c.db"))


@pytest.fixture
def faulty(tmp_path: Path) -> FaultyStore:
    return FaultyStore(open_store(f"sqlite:///{tmp_path}/cache.db"))


def _client(fake: FakeStigg, store: FaultyStore) -> ResilientClient:
    return ResilientClient(
        None, api_key=API_KEY, base_url=fake.url, store=store, outbox="memory://", policy=POLICY
    )


@pytest.mark.parametrize("nth", range(1, 5))  # get, put, get, get
def test_a_store_failing_at_any_single_operation_never_fails_a_check(
    fake: FakeStigg, faulty: FaultyStore, nth: int
) -> None:
    with _client(fake, faulty) as client:
        faulty.fail_at(nth)
        for _ in range(3):
            runtime_of(client).parts.cache.clear_l1()
            result = client.get_boolean_entitlement(customer_id="acme", feature_id="sso")
            assert result.has_access
        assert faulty.failures == 1
        assert client.status().faults  # counted and reported


def test_a_dead_store_degrades_to_memory_and_heals(fake: FakeStigg, faulty: FaultyStore) -> None:
    with _client(fake, faulty) as client:
        faulty.fail_all()
        assert (
            client.get_boolean_entitlement(customer_id="acme", feature_id="sso").decision.source
            is Source.LIVE
        )
        eventually(lambda: not client.status().store_healthy)  # written after the answer
        fake.set_mode(FakeMode.DOWN)
        # What the store could not keep, memory still has.
        assert client.get_boolean_entitlement(customer_id="acme", feature_id="sso").has_access
        faulty.heal()
        fake.set_mode(FakeMode.UP)
        runtime_of(client).parts.cache.clear_l1()
        client.get_boolean_entitlement(customer_id="acme", feature_id="sso")
        eventually(lambda: client.status().store_healthy)  # written after the answer


def test_unknown_operations_are_refused(faulty: FaultyStore) -> None:
    with pytest.raises(ValueError, match="unknown operations"):
        faulty.fail_all(["drop"])
