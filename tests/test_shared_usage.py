"""Every worker of a host counts the same local usage: the shared outbox's (DESIGN §8).

Workers are forked from one client, as ``gunicorn --preload`` makes them. What
one reports, what any one's flusher gets acknowledged, and what is
dead-lettered count the same in all of them.
"""

from __future__ import annotations

import asyncio
import gc
import threading
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs
import pytest

from stigg_cache import (
    AsyncResilientClient,
    MeteredEntitlement,
    ResilientClient,
    Source,
)
from stigg_cache._engine.fastpath import METERED
from stigg_cache.client import surface
from stigg_cache.core import ledger
from stigg_cache.outbox.base import KEEP_SENT_S, SharedUsage
from stigg_cache.policy.model import Meter
from stigg_cache.testing import ManualClock, runtime_of
from stigg_cache.testing.fake import FakeMode, FakeStigg, metered
from stigg_cache.testing.inside import stop_sending
from tests.conftest import API_KEY
from tests.forking import in_child
from tests.helpers import client_on, eventually, metered_fallback, while_progressing

LIMIT = 100.0
ROUNDS = 5
POLICY = metered_fallback(LIMIT, fresh_for_s=0.2)
SIBLING_LIMIT_S = 280  # the pytest timeout below, less the parent's part


def _client(fake: FakeStigg, store_url: str, **options: Any) -> ResilientClient:
    return client_on(fake, store_url, policy=POLICY, **options)


def _fits(client: ResilientClient, customer: str, units: float) -> bool:
    return client.get_metered_entitlement(
        customer_id=customer, feature_id="api_calls", requested_usage=units
    ).has_access


def test_usage_reported_offline_by_one_worker_counts_in_every_worker(
    fake: FakeStigg, store_url: str
) -> None:
    client = _client(fake, store_url)
    fake.set_mode(FakeMode.DOWN)

    def worker_a() -> bool:
        client.report_usage(customer_id="c-1", feature_id="api_calls", value=60)
        return _fits(client, "c-1", 40)

    assert in_child(worker_a) is True  # 60 + 40 = the limit
    client.report_usage(customer_id="c-1", feature_id="api_calls", value=40)
    assert not _fits(client, "c-1", 1)  # unit 101, in the worker that reported only 40
    assert in_child(lambda: _fits(client, "c-1", 1)) is False
    client.close()


def test_usage_acknowledged_by_another_workers_flusher_stops_counting_once_stigg_has_it(
    fake: FakeStigg, store_url: str
) -> None:
    fake.set_customer("c-2", [metered("api_calls", limit=100, usage=40)])
    client = _client(fake, store_url, settle_s=0.0)

    def worker_a() -> tuple[float | None, float | None]:
        runtime_of(
            client
        ).parts.usage.flusher.close()  # this worker never sends: a sibling's flusher must
        client.report_usage(customer_id="c-2", feature_id="api_calls", value=10)
        seen: list[tuple[float | None, float | None]] = []

        def settled() -> bool:  # Stigg's snapshot has the 10, and nothing is added locally
            stigg_says = dict(client.get_entitlements(customer_id="c-2").entitlements)
            answer = client.get_metered_entitlement(customer_id="c-2", feature_id="api_calls")
            seen.append((stigg_says["api_calls"].current_usage, answer.current_usage))
            return seen[-1] == (50.0, 50.0) and answer.decision.source is not Source.STALE

        eventually(settled)
        return seen[-1]

    assert in_child(worker_a) == [50.0, 50.0]  # the parent's flusher sent it meanwhile
    assert fake.account.usage_of("c-2", "api_calls") == 50.0
    client.close()


def test_dead_lettered_usage_counts_in_no_worker(fake: FakeStigg, store_url: str) -> None:
    client = _client(fake, store_url)
    fake.set_mode(FakeMode.DOWN)  # no snapshot: the fallback's limit of 100 decides
    eight_days_ago = datetime.now(UTC) - timedelta(days=8)  # past Stigg's dedup window

    def worker_a() -> bool:
        client.report_usage(
            customer_id="c-3", feature_id="api_calls", value=90, created_at=eight_days_ago
        )
        eventually(lambda: client.status().dead_letters == 1)  # never sendable: dead-lettered
        eventually(lambda: _fits(client, "c-3", 100))  # within the view's lag (SYNC_INTERVAL_S)
        return True

    assert in_child(worker_a)
    assert _fits(client, "c-3", 100)
    client.close()


def test_usage_stigg_counted_stops_counting_in_every_worker_once_a_snapshot_shows_it(
    fake: FakeStigg, store_url: str
) -> None:
    fake.account.aggregation_delay_s = 0.5  # reads show a report a moment after Stigg took it
    fake.set_customer("c-4", [metered("api_calls", limit=100, usage=80)])
    client = _client(fake, store_url, settle_s=3600.0)  # by time alone it would count an hour

    def settled() -> bool:  # Stigg's snapshot shows 90; 10 more fit (90 + 10 = the limit)
        stigg_says = dict(client.get_entitlements(customer_id="c-4").entitlements)
        answer = client.get_metered_entitlement(
            customer_id="c-4", feature_id="api_calls", requested_usage=10
        )
        return (
            stigg_says["api_calls"].current_usage == 90.0
            and answer.current_usage == 90.0
            and answer.has_access
            and answer.decision.source in (Source.LIVE, Source.CACHE)
        )

    def worker_a() -> bool:
        client.report_usage(customer_id="c-4", feature_id="api_calls", value=10)
        assert client.flush(timeout=5).drained  # Stigg answered: api_calls at 90
        assert not _fits(client, "c-4", 11)  # 80 seen + 10 not yet in it: 11 more do not fit
        eventually(settled)
        return True

    assert in_child(worker_a)
    eventually(settled)  # the parent read Stigg's count of it from the shared outbox
    client.close()


def test_a_warm_metered_answer_follows_every_change_of_the_hosts_usage(
    fake: FakeStigg, store_url: str
) -> None:
    """The fast path keeps its last judgement only while the ledger has not changed."""
    fake.set_customer("c-5", [metered("api_calls", limit=100, usage=40)])
    client = client_on(fake, store_url, policy=metered_fallback(LIMIT, fresh_for_s=600))
    client.get_entitlements(customer_id="c-5")
    client.get_metered_entitlement(customer_id="c-5", feature_id="api_calls")  # the memo
    fake.set_mode(FakeMode.DOWN)  # nothing is sent or settled: every unit stays local

    def warm(units: float) -> tuple[float | None, bool]:
        answer = surface(client).checks.fast(METERED, "c-5", "api_calls", None, units)
        assert answer is not None  # the fast path answered, from what it kept or afresh
        assert isinstance(answer, MeteredEntitlement)
        assert answer.decision.source is Source.CACHE
        return answer.current_usage, answer.has_access

    assert warm(60) == (40.0, True)
    assert warm(60) == (40.0, True)  # kept
    client.report_usage(customer_id="c-5", feature_id="api_calls", value=10)
    assert warm(60) == (50.0, False)  # this process's report
    assert warm(50) == (50.0, True)  # another amount: judged again
    in_child(
        lambda: (
            client.report_usage(customer_id="c-5", feature_id="api_calls", value=5).idempotency_key
        )
    )
    eventually(lambda: warm(50) == (55.0, False))  # a sibling's, within SYNC_INTERVAL_S
    client.close()


def test_a_worker_reads_no_usage_at_start_and_a_customers_when_it_first_needs_it(
    fake: FakeStigg, store_url: str
) -> None:
    """Start-up reads nothing proportional to the outbox (issue 17): usage is read per
    customer, at the first check or consumption that needs it."""
    first = _client(fake, store_url)
    fake.set_mode(FakeMode.DOWN)  # everything stays in the outbox
    first.report_usage_bulk(
        [{"customer_id": f"c-{n}", "feature_id": "api_calls", "value": 1} for n in range(200)]
    )
    first.report_usage(customer_id="c-7", feature_id="api_calls", value=95)  # c-7: 96 of 100
    later = _client(fake, store_url)  # a worker started afterwards
    assert len(runtime_of(later).parts.usage.ledger) == 0  # nothing read at start
    assert not _fits(later, "c-7", 5)  # 96 + 5: read when first needed
    assert _fits(later, "c-7", 4)
    assert len(runtime_of(later).parts.usage.ledger) == 2  # that customer's records only
    assert not later.consume(customer_id="c-9", feature_id="api_calls", amount=100).granted
    assert len(runtime_of(later).parts.usage.ledger) == 3  # c-9's one unit, read before judging
    later.close()
    first.close()


def test_threads_checking_a_customer_not_yet_read_all_wait_for_its_whole_usage(
    fake: FakeStigg, store_url: str
) -> None:
    first = _client(fake, store_url)
    fake.set_mode(FakeMode.DOWN)
    first.report_usage_bulk(  # the limit, in many records: reading them takes a while
        [{"customer_id": "c-8", "feature_id": "api_calls", "value": 0.005} for _ in range(20_000)]
    )
    later = _client(fake, store_url)  # a worker started afterwards: c-8 not read yet
    # No sync due for a minute: no thread waits on one (as the async client's threads, whose
    # syncs run in the background): each goes straight to reading the customer's usage.
    runtime_of(later).parts.usage.next_sync = time.monotonic() + 60
    granted: list[bool] = []

    def check(delay_s: float) -> None:
        time.sleep(delay_s)  # one after the other, while the first reads
        granted.append(_fits(later, "c-8", 1))

    threads = [threading.Thread(target=check, args=(n * 0.01,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert granted == [False] * 8  # none answered with part of the usage
    later.close()
    first.close()


def test_events_a_meter_reads_count_in_a_worker_started_later(
    fake: FakeStigg, store_url: str
) -> None:
    policy = attrs.evolve(POLICY, meters={"api_calls": Meter(event="api.request")})
    first = client_on(fake, store_url, policy=policy)
    fake.set_mode(FakeMode.DOWN)
    first.report_event(
        [{"customer_id": "c-9", "event_name": "api.request"} for _ in range(100)]
        + [{"customer_id": "c-9", "event_name": "page.view"} for _ in range(50)]
    )
    later = client_on(fake, store_url, policy=policy)  # reads c-9's usage when first needed
    assert not _fits(later, "c-9", 1)  # the 100 metered events: at the limit
    assert len(runtime_of(later).parts.usage.ledger) == 100  # the other events were never read
    later.close()
    first.close()


def _ledger_bytes() -> int:
    """Bytes held by objects the usage ledger made (tracemalloc must be tracing)."""
    gc.collect()
    held = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(True, ledger.__file__)])
    return sum(stat.size for stat in held.statistics("filename"))


@pytest.mark.timeout(360)  # 10,000 customers' usage reported, traced and sent at load 15
def test_a_worker_holds_nothing_for_usage_siblings_got_acknowledged_long_ago(
    fake: FakeStigg, store_url: str
) -> None:
    """Issue 28 #6: memory follows what is pending, not how many customers ever reported.

    This worker reports 10,000 customers' usage while Stigg is down; a sibling worker's
    flusher gets it all acknowledged. Once the outbox no longer keeps it (``KEEP_SENT_S``),
    this worker's ledger holds nothing for it, though no check ever read those customers.
    """
    customers = 10_000
    clock = ManualClock()
    fake.account.set_limits(events_per_second=1e6, usage_calls_per_minute=1e8)
    client = _client(fake, store_url, clock=clock, usage_calls_per_minute=1e8)
    fake.set_mode(FakeMode.DOWN)  # this worker's flusher fails once, and waits (its clock)
    tracemalloc.start()
    try:
        client.report_usage_bulk(
            [
                {"customer_id": f"c-{n}", "feature_id": "api_calls", "value": 1}
                for n in range(customers)
            ]
        )
        pending = _ledger_bytes()
        fake.set_mode(FakeMode.UP)

        def sibling() -> tuple[int, int]:  # its clock moves on: its flusher sends everything
            tracemalloc.stop()  # only this worker's memory is measured: tracing halves the pace
            clock.advance(120)
            runtime_of(client).parts.usage.flusher.wake()
            # 100 sends of 100 records: CPU-bound, as long as a loaded host makes it (it took
            # over 20 s at load 15), so only a flusher that stops sending fails
            while_progressing(lambda: runtime_of(client).parts.usage.flusher.sent, customers)
            return runtime_of(client).parts.usage.flusher.sent, client.status().outbox_depth

        assert in_child(sibling, limit_s=SIBLING_LIMIT_S) == [customers, 0]  # sent, left
        _fits(client, "acme", 1)  # a check: this worker follows the acknowledgements
        clock.advance(KEEP_SENT_S + 600)  # the outbox forgets them on its next write
        client.report_usage(customer_id="c-new", feature_id="api_calls", value=1)
        runtime_of(client).parts.usage.flusher.wake()
        eventually(
            lambda: runtime_of(client).parts.usage.flusher.sent == 1
        )  # sent, and acknowledged here
        settled = _ledger_bytes()
    finally:
        tracemalloc.stop()
    client.close()
    assert len(fake.account.usages) == customers + 1  # every record reached Stigg once
    assert pending > 1_000 * customers  # 10,000 customers' tallies were held while pending
    assert settled < 64 * 1024  # and nothing of them is now


def test_awaited_checks_leave_no_tally_behind_once_usage_is_settled(
    fake: FakeStigg, store_url: str
) -> None:
    """Issue 28 #6 on the event loop: a tally with nothing left to count goes at once."""
    customers = [f"c-{n}" for n in range(50)]
    for customer in customers:
        fake.set_customer(customer, [metered("api_calls", limit=100, usage=0)])

    async def story() -> tuple[list[float | None], int]:
        async with AsyncResilientClient(
            None, api_key=API_KEY, base_url=fake.url, store=store_url, policy=POLICY, settle_s=0.0
        ) as client:
            await client.report_usage_bulk(
                [{"customer_id": c, "feature_id": "api_calls", "value": 1} for c in customers]
            )
            assert (await client.flush(timeout=10)).drained
            answers = [
                await client.get_metered_entitlement(customer_id=c, feature_id="api_calls")
                for c in customers
            ]  # fetched after the acknowledgement: Stigg's count has each unit
            return [a.current_usage for a in answers], len(
                runtime_of(client).parts.usage.ledger._tallies
            )

    assert asyncio.run(story()) == ([1.0] * 50, 0)


@pytest.mark.parametrize("asynchronous", [False, True], ids=["threads", "event-loop"])
def test_every_check_counts_the_usage_siblings_reported_before_it(
    fake: FakeStigg, store_url: str, asynchronous: bool
) -> None:
    """#28 item 2: an awaited check that found the shared outbox due to be read answered
    with what its worker knew and read it in the background: siblings' usage missed."""
    make: Any = AsyncResilientClient if asynchronous else ResilientClient
    client = make(None, api_key=API_KEY, base_url=fake.url, store=store_url, policy=POLICY)
    sync = client._core if asynchronous else client
    usage = runtime_of(client).parts.usage
    fake.set_mode(FakeMode.DOWN)  # no snapshot: the policy answers, with the host's usage

    def used() -> float | None:
        ask = client.get_metered_entitlement(customer_id="c-10", feature_id="api_calls")
        answer: MeteredEntitlement = asyncio.run(ask) if asynchronous else ask
        return answer.current_usage

    def sibling_reports() -> None:
        sync.report_usage(customer_id="c-10", feature_id="api_calls", value=10)

    seen = [used()]
    for _ in range(ROUNDS):
        in_child(sibling_reports)  # in the shared outbox once it returns
        eventually(lambda: time.monotonic() >= usage.next_sync)  # the lag stated
        seen.append(used())
    assert seen == [10.0 * n for n in range(ROUNDS + 1)]
    if asynchronous:
        asyncio.run(client.aclose())
    else:
        client.close()


@pytest.mark.parametrize("asynchronous", [False, True], ids=["threads", "event-loop"])
def test_usage_acknowledged_while_a_worker_first_reads_its_customer_counts_once(
    fake: FakeStigg, store_url: str, asynchronous: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A first check reads its customer's records from the shared outbox (10 pending). Just
    after that read a sibling gets them acknowledged, and another thread of the worker
    applies that change before the customer counts as read: it passes the acknowledgement
    by. The check must read what moved again, or it counts the 10 twice once Stigg's
    snapshot has them (50 + 10)."""
    fake.set_customer("c-11", [metered("api_calls", limit=100, usage=40)])
    reporter = _client(fake, store_url)
    make: Any = AsyncResilientClient if asynchronous else ResilientClient
    worker = make(
        None, api_key=API_KEY, base_url=fake.url, store=store_url, policy=POLICY, settle_s=0.0
    )
    usage = runtime_of(worker).parts.usage
    for client in (reporter, worker):
        stop_sending(client)  # neither sends: only the sibling below
    reporter.report_usage(customer_id="c-11", feature_id="api_calls", value=10)  # pending
    outbox = usage.outbox
    assert isinstance(outbox, SharedUsage)  # SQLite's and Redis's, each the host's or fleet's
    read = outbox.held_of

    def read_then_acknowledged(customer_id: str, resource_id: str | None) -> Any:
        held = read(customer_id, resource_id)  # the 10, pending
        sibling = _client(fake, store_url)
        assert sibling.flush(timeout=5).drained  # Stigg has them: api_calls at 50
        sibling.close()
        usage.next_sync = 0.0  # and a thread of this worker follows that change now
        usage.sync()
        return held

    monkeypatch.setattr(outbox, "held_of", read_then_acknowledged)

    def check() -> MeteredEntitlement:
        ask = worker.get_metered_entitlement(customer_id="c-11", feature_id="api_calls")
        answer: MeteredEntitlement = asyncio.run(ask) if asynchronous else ask
        return answer

    assert check().current_usage == 50.0  # Stigg's 40 and the 10 not yet in that snapshot
    assert fake.account.usage_of("c-11", "api_calls") == 50.0
    time.sleep(0.3)  # past the policy's fresh_for: the next check refreshes the snapshot
    eventually(lambda: check().decision.source is Source.CACHE)
    assert check().current_usage == 50.0  # the snapshot's 50, nothing more
    if asynchronous:
        asyncio.run(worker.aclose())
    else:
        worker.close()
    reporter.close()
