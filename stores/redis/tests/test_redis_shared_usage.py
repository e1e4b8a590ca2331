"""One view of usage for a fleet on Redis: the SQLite tests of a host, run on Redis (DESIGN §8).

The same two-process tests (forked workers of one client) as for the default
SQLite outbox: usage reported offline by one worker counts in every worker; an
acknowledgement by another worker's flusher (also one that lands while a worker
first reads its customer, and one moved from the host's local outbox to Redis as it
does), dead letters, and Stigg's own count
of usage (also when its answer was lost and the report resent) settle it in all of them; ``consume()`` from 8 threads x 4 processes never
grants past the limit, and a retry of it is its first receipt; a worker holds no
memory for usage settled long ago. Only the store differs.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from stigg_cache._engine import ledger
from stigg_cache.errors import StoreError
from stigg_cache.testing import runtime_of
from stigg_cache.testing.fake import FakeStigg, metered
from stigg_cache.testing.inside import stop_sending
from tests.conftest import fake  # the same fake (and key) as the SQLite runs
from tests.test_consume import (
    test_a_consumption_retried_with_its_key_is_its_first_receipt_in_any_worker,
    test_consume_grants_what_fits_and_enqueues_only_what_it_grants,
    test_threads_of_forked_workers_never_grant_past_the_limit_while_stigg_is_down,
    test_threads_of_forked_workers_never_grant_past_the_limit_while_stigg_lags,
)
from tests.test_dead_letters import (
    test_a_record_dead_lettered_under_a_number_used_before_counts_nowhere_and_stays_dead,
)
from tests.test_invalidation_fence import (
    test_a_check_begun_after_a_grant_gets_no_fetch_begun_before_it_in_any_worker,
    test_a_fetch_begun_before_a_grant_is_kept_by_no_worker,
)
from tests.test_shared_usage import (
    _client,
    test_a_warm_metered_answer_follows_every_change_of_the_hosts_usage,
    test_a_worker_holds_nothing_for_usage_siblings_got_acknowledged_long_ago,
    test_a_worker_reads_no_usage_at_start_and_a_customers_when_it_first_needs_it,
    test_dead_lettered_usage_counts_in_no_worker,
    test_events_a_meter_reads_count_in_a_worker_started_later,
    test_threads_checking_a_customer_not_yet_read_all_wait_for_its_whole_usage,
    test_usage_acknowledged_by_another_workers_flusher_stops_counting_once_stigg_has_it,
    test_usage_acknowledged_while_a_worker_first_reads_its_customer_counts_once,
    test_usage_reported_offline_by_one_worker_counts_in_every_worker,
    test_usage_stigg_counted_stops_counting_in_every_worker_once_a_snapshot_shows_it,
)
from tests.test_usage_counted_once import (
    test_usage_a_snapshot_counts_is_not_added_again_once_stigg_acknowledges_it,
    test_usage_whose_answer_was_lost_counts_once_when_its_resend_is_acknowledged,
)

from conftest import url_for

__all__ = [
    "fake",
    "test_a_check_begun_after_a_grant_gets_no_fetch_begun_before_it_in_any_worker",
    "test_a_consumption_retried_with_its_key_is_its_first_receipt_in_any_worker",
    "test_a_fetch_begun_before_a_grant_is_kept_by_no_worker",
    "test_a_record_dead_lettered_under_a_number_used_before_counts_nowhere_and_stays_dead",
    "test_a_warm_metered_answer_follows_every_change_of_the_hosts_usage",
    "test_a_worker_holds_nothing_for_usage_siblings_got_acknowledged_long_ago",
    "test_a_worker_reads_no_usage_at_start_and_a_customers_when_it_first_needs_it",
    "test_consume_grants_what_fits_and_enqueues_only_what_it_grants",
    "test_dead_lettered_usage_counts_in_no_worker",
    "test_events_a_meter_reads_count_in_a_worker_started_later",
    "test_threads_checking_a_customer_not_yet_read_all_wait_for_its_whole_usage",
    "test_threads_of_forked_workers_never_grant_past_the_limit_while_stigg_is_down",
    "test_threads_of_forked_workers_never_grant_past_the_limit_while_stigg_lags",
    "test_usage_a_snapshot_counts_is_not_added_again_once_stigg_acknowledges_it",
    "test_usage_acknowledged_by_another_workers_flusher_stops_counting_once_stigg_has_it",
    "test_usage_acknowledged_while_a_worker_first_reads_its_customer_counts_once",
    "test_usage_reported_offline_by_one_worker_counts_in_every_worker",
    "test_usage_stigg_counted_stops_counting_in_every_worker_once_a_snapshot_shows_it",
    "test_usage_whose_answer_was_lost_counts_once_when_its_resend_is_acknowledged",
]


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    """Store and outbox in Redis (the fleet's), each test in a namespace of its own.

    With a 2 s timeout, not the 0.1 s default: these tests are about one view of usage
    while Redis answers; at load 12-20 the default's reads timed out, and a check then
    rightly answered with what its worker knew (what Redis faults do is tested apart).
    """
    return url_for(tmp_path) + "&timeout=2"


def test_a_record_moved_to_redis_while_a_worker_first_reads_its_customer_counts_in_that_check(
    fake: FakeStigg, store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker's first read of a customer is two reads here: Redis, then the host's local
    outbox. A sibling's flusher that moves a record from the one to the other in between
    leaves it out of both; the check must still count it (Stigg's 40 + the 10 pending:
    55 more do not fit), not only a sync later."""
    monkeypatch.setattr(ledger, "SYNC_INTERVAL_S", 0.5)  # no sync of its own comes to help
    fake.set_customer("c-m", [metered("api_calls", limit=100, usage=40)])
    fake.set_customer("c-other", [metered("api_calls", limit=100, usage=0)])
    worker, reporter, mover = (_client(fake, store_url, settle_s=0.0) for _ in range(3))
    for client in (worker, reporter, mover):
        stop_sending(client)  # nothing moves or is sent but by the steps below
    reporting: Any = runtime_of(reporter).parts.usage.outbox

    def unreachable(*_: Any, **__: Any) -> Any:
        raise StoreError("Redis did not answer (this process's fault alone)")

    monkeypatch.setattr(reporting, "_enqueue_remote", unreachable)
    reporter.report_usage(customer_id="c-m", feature_id="api_calls", value=10)
    outbox: Any = runtime_of(worker).parts.usage.outbox
    assert outbox.local.stats(time.time()).pending == 1  # in the host's local outbox
    worker.get_metered_entitlement(customer_id="c-other", feature_id="api_calls")  # a sync
    usage, read_local = runtime_of(worker).parts.usage, outbox.local.held_of
    moving: Any = runtime_of(mover).parts.usage.outbox

    def moved_meanwhile(customer_id: str, resource_id: str | None) -> Any:
        usage.next_sync = 0.0  # another thread of the worker syncs: nothing moved yet
        usage.sync()
        moving._move_local(time.time())  # then a sibling's flusher moves the 10 to Redis
        return read_local(customer_id, resource_id)

    monkeypatch.setattr(outbox.local, "held_of", moved_meanwhile)
    first = worker.get_metered_entitlement(
        customer_id="c-m", feature_id="api_calls", requested_usage=55
    )
    for client in (worker, reporter, mover):
        client.close()
    assert (first.current_usage, first.has_access) == (50.0, False)
