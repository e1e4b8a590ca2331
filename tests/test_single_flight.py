"""Concurrent misses for one customer share one request to Stigg."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from stigg_cache import ConnectionState, ResilientClient, Source
from stigg_cache.core.terms import ScopeKey
from stigg_cache.stores.layered import Fence, SnapshotCache
from stigg_cache.testing import ManualClock, runtime_of
from stigg_cache.testing.fake import FakeMode, FakeStigg, boolean
from tests.conftest import MakeClient
from tests.forking import in_child

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


STALE_CUSTOMERS = 12  # more than every fetch slot there is


def test_refreshes_ahead_never_take_the_slot_a_live_fetch_needs(
    fake: FakeStigg, make_client: MakeClient, clock: ManualClock
) -> None:
    # Stale customers refreshing from a slow Stigg used to take every slot: an unknown
    # customer then got DEFAULT allow at once, and LIVE deny half a second later.
    customers = [f"stale-{n}" for n in range(STALE_CUSTOMERS)]
    for customer in customers:
        fake.set_customer(customer, [boolean("sso")])
    client = make_client(clock=clock, check_timeout=2.0)
    for customer in customers:
        client.get_boolean_entitlement(customer_id=customer, feature_id="sso")
    clock.advance(120)  # past fresh_for_s (60), within max_staleness_s

    def checked(unknown: str) -> list[str]:
        stale = [
            client.get_boolean_entitlement(customer_id=customer, feature_id="sso")
            for customer in customers
        ]  # each starts a refresh nobody waits for
        ghost = client.get_boolean_entitlement(customer_id=unknown, feature_id="sso")
        assert (ghost.has_access, ghost.access_denied_reason) == (False, "CustomerNotFound")
        return [*{answer.decision.source.value for answer in stale}, ghost.decision.source.value]

    fake.set_mode(FakeMode.SLOW, delay_s=0.5)  # here: the fake serves from this process
    assert in_child(lambda: checked("ghost-1")) == [
        "STALE",
        "LIVE",
    ]  # a worker forked after it was built
    time.sleep(0.6)  # the child's refreshes are over
    client.close()  # the parent's own slots too: nothing of the child's is held here
    client = make_client(clock=clock, check_timeout=2.0)
    assert checked("ghost-2") == ["STALE", "LIVE"]


def _refreshing_at_a_slow_fake(
    fake: FakeStigg, make_client: MakeClient, clock: ManualClock, delay_s: float
) -> tuple[ResilientClient, threading.Thread]:
    """A client whose refresh of a stale customer waits at the fake for ``delay_s``, and
    the thread of that refresh."""
    client = make_client(clock=clock)
    client.get_boolean_entitlement(customer_id="acme", feature_id="sso")
    clock.advance(120)  # stale: the next check answers at once and refreshes behind it
    fake.set_mode(FakeMode.SLOW, delay_s=delay_s)
    before = set(threading.enumerate())
    client.get_boolean_entitlement(customer_id="acme", feature_id="sso")
    (refresh,) = [t for t in set(threading.enumerate()) - before if t.name == "stigg-cache-fetch"]
    time.sleep(0.2)  # the refresh waits at the fake
    return client, refresh


def test_a_refresh_that_fails_after_close_is_no_mark_against_stigg(
    fake: FakeStigg, make_client: MakeClient, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    # make demo ended with "status_changed: CONNECTED -> DEGRADED" after its last status
    # line: a refresh in flight failed as close() shut the HTTP client, and its failure
    # was counted against Stigg.
    client, refresh = _refreshing_at_a_slow_fake(fake, make_client, clock, 5.0)
    with caplog.at_level(logging.WARNING, logger="stigg_cache"):
        client.close()
        fake.set_mode(FakeMode.DOWN)  # as the demo's fake stops: the refresh's socket is reset
        refresh.join(timeout=10)
    assert not refresh.is_alive()
    assert [r.message for r in caplog.records if "status_changed" in r.message] == []
    assert runtime_of(client).parts.health.state is ConnectionState.CONNECTED


def test_a_refresh_answered_after_close_is_kept_nowhere_and_logs_nothing(
    fake: FakeStigg, make_client: MakeClient, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    # close() no longer cuts a refresh short (the adapter closes as its last call returns):
    # the answer that comes after it must not reach the store close() shut.
    client, refresh = _refreshing_at_a_slow_fake(fake, make_client, clock, 0.5)
    with caplog.at_level(logging.INFO, logger="stigg_cache"):
        client.close()
        refresh.join(timeout=10)  # Stigg answered it after close(), and it is over
    assert not refresh.is_alive()
    assert fake.entitlement_requests() == 2  # answered: not cut short by close()
    assert [r.getMessage() for r in caplog.records] == []
    assert runtime_of(client).parts.health.state is ConnectionState.CONNECTED


def test_a_refresh_answered_as_close_runs_is_written_nowhere_and_logs_nothing(
    fake: FakeStigg,
    make_client: MakeClient,
    clock: ManualClock,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A refresh Stigg answered just before close() was still written to the store close()
    # had shut (a false store_write_failed): the fetcher looked at close() before its last
    # store read, and counted its write under way only after it.
    reading, closed = threading.Event(), threading.Event()
    fenced_since = SnapshotCache.fenced_since
    reads: list[ScopeKey] = []

    def held_up(self: SnapshotCache, scope: ScopeKey, fence: Fence) -> bool:
        answer = fenced_since(self, scope, fence)
        reads.append(scope)
        if len(reads) == 2:  # the refresh's (the first is the fetch that warms the customer)
            reading.set()
            closed.wait(timeout=10)  # a slow store read, over once close() is
        return answer

    monkeypatch.setattr(SnapshotCache, "fenced_since", held_up)
    client, refresh = _refreshing_at_a_slow_fake(fake, make_client, clock, 0.3)
    assert reading.wait(timeout=10)  # Stigg answered the refresh; its store read is under way
    with caplog.at_level(logging.INFO, logger="stigg_cache"):
        client.close()
        closed.set()
        refresh.join(timeout=10)
    assert not refresh.is_alive()
    assert [r.getMessage() for r in caplog.records] == []
