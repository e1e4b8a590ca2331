"""One refresh per customer per host; a worker notices a sibling's refresh (DESIGN §8)."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

from stigg_cache import FallbackPolicy, ResilientClient, Source, Staleness
from stigg_cache.models import Snapshot
from stigg_cache.stores._codec import decode_snapshot, encode_snapshot, snapshot_key
from stigg_cache.stores.sqlite import SqliteStore
from stigg_cache.testing import runtime_of
from stigg_cache.testing.fake import FakeMode, FakeStigg, boolean
from tests.conftest import API_KEY
from tests.forking import child_result, fork_child, in_child
from tests.helpers import eventually

WORKERS = 4
CUSTOMERS = [f"shared-{n}" for n in range(10)]


def _client(fake: FakeStigg, tmp_path: Path, policy: FallbackPolicy) -> ResilientClient:
    return ResilientClient(
        None,
        api_key=API_KEY,
        base_url=fake.url,
        store=f"sqlite:///{tmp_path}/cache.db",
        policy=policy,
        check_timeout=5.0,  # coordination, not the budget, is tested: room for a loaded machine
        fetch_concurrency=2 * len(CUSTOMERS),  # a slot for every customer checked at once
    )


def _stored_fetched_at(client: ResilientClient, key: str) -> float:
    stored = runtime_of(client).parts.cache.store.get(key)
    assert isinstance(stored, bytes)
    return decode_snapshot(stored).fetched_at


def _check_all(client: ResilientClient) -> list[str]:
    """Every customer at once, from a thread each; the sources of the answers."""
    sources: list[str] = []

    def one(customer: str) -> None:
        answer = client.get_boolean_entitlement(customer_id=customer, feature_id="sso")
        source = answer.decision.source.value
        sources.append(
            source if source in ("LIVE", "CACHE") else f"{source}: {answer.decision.reason}"
        )

    threads = [threading.Thread(target=one, args=(c,)) for c in CUSTOMERS]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    return sources


def _check_all_then_exit(client: ResilientClient) -> list[str]:
    """A worker's life: check, then close the client as it exits. A snapshot is written to
    the store after the check has its answer; a worker leaving with ``os._exit`` before
    that write (the test's children did) left its leases held and its siblings waiting
    out half their budget, then asking Stigg themselves: the "up to 19 reads" seen."""
    sources = _check_all(client)
    client.close()  # waits for the snapshots on their way to the store
    return sources


def test_workers_asking_for_the_same_cold_customers_at_once_read_each_from_stigg_once(
    fake: FakeStigg, tmp_path: Path
) -> None:
    for customer in CUSTOMERS:
        fake.set_customer(customer, [boolean("sso")])
    policy = FallbackPolicy(staleness=Staleness(fresh_for_s=60, max_staleness_s=3600))
    client = _client(fake, tmp_path, policy)
    fake.set_mode(FakeMode.SLOW, delay_s=0.3)  # every worker's flights overlap
    pids = [fork_child(lambda: _check_all_then_exit(client)) for _ in range(WORKERS)]
    sources = [source for pid in pids for source in child_result(pid)]
    # LIVE, or CACHE for a worker that started after a sibling's refresh was stored.
    assert len(sources) == WORKERS * len(CUSTOMERS)
    assert set(sources) <= {Source.LIVE.value, Source.CACHE.value}, set(sources)
    # 40 reads without the lease, one per customer with it.
    assert fake.entitlement_requests() <= 1.1 * len(CUSTOMERS)  # 10 in every run seen
    client.close()


def test_a_worker_answers_from_a_siblings_refresh_when_its_own_copy_has_expired(
    fake: FakeStigg, tmp_path: Path
) -> None:
    fake.set_customer("acme", [boolean("sso")])
    policy = FallbackPolicy(staleness=Staleness(fresh_for_s=0.1, max_staleness_s=1.0))
    client = _client(fake, tmp_path, policy)
    assert client.get_boolean_entitlement(customer_id="acme", feature_id="sso").has_access
    time.sleep(1.1)  # this worker's copy is now past max_staleness
    key = snapshot_key("acme", None)
    first_fetched_at = _stored_fetched_at(client, key)

    def sibling() -> str:  # refreshes it, into the shared store
        answer = client.get_boolean_entitlement(customer_id="acme", feature_id="sso")
        eventually(lambda: _stored_fetched_at(client, key) > first_fetched_at)  # written after
        return answer.decision.source.value

    refreshed = in_child(sibling)
    fake.set_mode(FakeMode.DOWN)
    answer = client.get_boolean_entitlement(customer_id="acme", feature_id="sso")
    assert refreshed == Source.LIVE.value
    assert answer.has_access
    assert answer.decision.source in (Source.CACHE, Source.STALE)  # not DEFAULT
    assert answer.decision.age_s is not None
    assert answer.decision.age_s < 1.0
    client.close()


def test_a_lease_a_sibling_holds_is_refused_without_the_write_lock(tmp_path: Path) -> None:
    """Workers waiting on a sibling's refresh asked for its lease with a write: hundreds a
    second on a busy host, queueing with the very snapshot writes they waited for (row 14
    of the bench: siblings waited out half their budget, then asked Stigg themselves).
    A lease held unexpired by another owner is refused on a read, even while another
    process holds the write lock (before: "database is locked" after LEASE_WAIT_S)."""
    store = SqliteStore(tmp_path / "cache.db")
    assert store.lease("refresh:acme", "sibling", 60)
    locker = sqlite3.connect(tmp_path / "cache.db", isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")  # another process's write, under way
    try:
        assert store.lease("refresh:acme", "me", 60) is False
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    assert store.lease("refresh:acme", "sibling", 60)  # its holder renews it
    assert store.lease("refresh:globex", "me", 60)  # a free one is still taken
    store.close()


def test_a_worker_waits_for_a_siblings_refresh_while_the_store_is_write_locked(
    fake: FakeStigg, tmp_path: Path
) -> None:
    """A flight finding the lease held waits for the holder's snapshot and never asks
    Stigg, with no lease fault, though another process holds the write lock as it looks."""
    policy = FallbackPolicy(staleness=Staleness(fresh_for_s=60, max_staleness_s=3600))
    client = _client(fake, tmp_path, policy)
    sibling = SqliteStore(tmp_path / "cache.db")
    key = snapshot_key("acme", None)
    assert sibling.lease("refresh:" + key, "sibling", 60)
    locker = sqlite3.connect(tmp_path / "cache.db", isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")
    answers: list[Source] = []
    checking = threading.Thread(
        target=lambda: answers.append(
            client.get_boolean_entitlement(customer_id="acme", feature_id="sso").decision.source
        )
    )
    checking.start()
    fetcher = runtime_of(client).parts.fetcher
    eventually(lambda: any(flight.on_sibling for flight in list(fetcher._flights.values())))
    locker.execute("ROLLBACK")
    locker.close()
    snapshot = Snapshot("acme", None, {"sso": boolean("sso")}, time.time())
    sibling.put(key, encode_snapshot(snapshot))  # the sibling's refresh lands
    checking.join(10)
    assert answers == [Source.LIVE]
    assert fake.entitlement_requests() == 0
    assert runtime_of(client).parts.faults.counts["stigg_cache.store_lease_failed"] == 0
    sibling.close()
    client.close()
