"""L1 bounds the memory it really holds and resists scans (issue 17).

Its byte budget counts decoded snapshots and the fast path's prepared answers
(not the stored size, a third of it); a full L1 admits a newcomer only if it
was asked for more often lately than the entry it would evict (TinyLFU), so a
scan of customers each asked once cannot flush the customers asked all the time.
"""

from __future__ import annotations

import gc
import tracemalloc
from pathlib import Path

from stigg_cache._support.clock import SYSTEM_CLOCK
from stigg_cache.models import Snapshot
from stigg_cache.stores.layered import PREPARED_FEATURE_BYTES, SnapshotCache
from stigg_cache.stores.memory import MemoryStore
from stigg_cache.testing import runtime_of
from stigg_cache.testing.fake import FakeStigg, boolean, metered
from tests.forking import in_child
from tests.helpers import client_on

FEATURES = [*(boolean(f"flag-{n}") for n in range(19)), metered("api_calls", limit=100)]


def _snapshot(customer: str) -> Snapshot:
    return Snapshot(customer, None, {f.feature_id: f for f in FEATURES}, 1.0)


def test_the_byte_budget_counts_prepared_answers(fake: FakeStigg, tmp_path: Path) -> None:
    fake.set_customer("acme", FEATURES)
    client = client_on(fake, tmp_path)
    client.get_entitlements(customer_id="acme")
    before = runtime_of(client).parts.cache.l1_bytes
    for feature in FEATURES:
        client.get_boolean_entitlement(customer_id="acme", feature_id=feature.feature_id)
    assert (
        runtime_of(client).parts.cache.l1_bytes == before + len(FEATURES) * PREPARED_FEATURE_BYTES
    )
    client.close()


def test_the_memory_l1_holds_stays_within_its_budget(fake: FakeStigg, tmp_path: Path) -> None:
    budget = 2_000_000  # about 45 customers with every feature's answer prepared
    customers = [f"c{n}" for n in range(120)]
    for customer in customers:
        fake.set_customer(customer, FEATURES)
    client = client_on(fake, tmp_path, l1_max_bytes=budget)
    tracemalloc.start()  # before L1 holds anything: what it frees is then traced
    for _ in range(2):  # twice: asked again, a customer is admitted past the one it evicts
        for customer in customers:
            for feature in FEATURES:
                client.get_boolean_entitlement(customer_id=customer, feature_id=feature.feature_id)
    assert runtime_of(client).parts.cache.l1_bytes <= budget
    gc.collect()
    held = list(runtime_of(client).parts.cache.l1.items())
    runtime_of(client).parts.cache.clear_l1()
    gc.collect()
    before = tracemalloc.get_traced_memory()[0]
    del held  # what L1 held, and nothing else held it
    gc.collect()
    freed = before - tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert 0.5 * budget < freed <= 1.3 * budget, freed  # the budget is what it holds
    client.close()


def _survives_a_scan(cache: SnapshotCache, hot: list[str]) -> list[str]:
    """Customers of ``hot`` asked for again after every 150 of a scan of 1,500 others
    asked once each (L1 holds 100: plain LRU keeps none of them): the hot customers L1
    no longer holds afterwards."""
    for n in range(1_500):
        if n % 150 == 0:
            for customer in hot:
                cache.get(customer, None)
        cache.put(_snapshot(f"scan-{n}"), 0.0)  # fetched for one check
        cache.get(f"scan-{n}", None)
    return [customer for customer in hot if (customer, None) not in cache.l1]


def test_a_scan_does_not_flush_the_customers_asked_for_all_the_time() -> None:
    cache = SnapshotCache(MemoryStore(), SYSTEM_CLOCK, lambda *_: None, max_entries=100)
    hot = [f"hot-{n}" for n in range(50)]
    for customer in hot:
        cache.put(_snapshot(customer), 0.0)
    assert _survives_a_scan(cache, hot) == []
    assert in_child(lambda: _survives_a_scan(cache, hot)) == []  # a forked worker's L1 too
