"""The usage ledger's settling rules: by time, and sooner by Stigg's own count (DESIGN §8)."""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Callable

import pytest

from stigg_cache.core.ledger import (
    DEFAULT_KEEP_ACKED_S,
    EXPIRY_STEP_S,
    LocalUsage,
    UsageLedger,
)

SCOPE = ("c-1", None, "api_calls")


def _ledger() -> UsageLedger:
    ledger = UsageLedger(settle_s=3600.0)  # by time alone, an hour
    ledger.record(SCOPE, "k1", value=10.0, at=100.0)
    return ledger


def test_acknowledged_usage_counts_until_a_snapshot_shows_stiggs_count_of_it() -> None:
    ledger = _ledger()
    ledger.acknowledge(
        [("c-1", "k1")], 200.0, {("c-1", "k1"): 90.0}
    )  # Stigg: api_calls is at 90 with it
    in_doubt = ledger.local_usage(SCOPE, 250.0, None, 80.0)  # not in that snapshot yet
    assert in_doubt is not None
    assert in_doubt.applied_to(80.0) == 90.0
    assert ledger.local_usage(SCOPE, 300.0, None, 90.0) is None  # in it: counted once
    assert ledger.local_usage(SCOPE, 400.0, None, 80.0) is None  # and it stays settled


def test_stiggs_answer_to_a_report_is_usage_it_counts_whatever_a_snapshot_shows() -> None:
    """Stigg answered 90 with the record: a check never reads less (a snapshot of 70
    fetched before it, plus the record's 10, said 80)."""
    ledger = _ledger()
    ledger.acknowledge([("c-1", "k1")], 200.0, {("c-1", "k1"): 90.0})
    assert ledger.local_usage(SCOPE, 150.0, None, 70.0) == LocalUsage(0.0, absolute=90.0)


def test_a_resent_record_a_snapshot_already_shows_counts_once_when_acknowledged() -> None:
    """Attack F8: taken in by Stigg at 120 (its answer lost), shown by a snapshot fetched at
    150, resent and acknowledged at 200 (deduplicated: Stigg answers 90). It counted twice
    (100) until settle_s; in doubt before the acknowledgement, it counts locally."""
    ledger = _ledger()
    assert ledger.local_usage(SCOPE, 150.0, None, 90.0) == LocalUsage(10.0)  # in doubt
    ledger.acknowledge([("c-1", "k1")], 200.0, {("c-1", "k1"): 90.0})
    assert ledger.local_usage(SCOPE, 150.0, None, 90.0) is None


def test_without_a_snapshot_every_held_record_counts_whatever_stigg_answered() -> None:
    ledger = _ledger()
    ledger.acknowledge([("c-1", "k1")], 200.0, {("c-1", "k1"): 90.0})
    assert ledger.local_usage(SCOPE, None, None) == LocalUsage(10.0)  # a policy's answer


def test_usage_without_stiggs_count_settles_by_time_alone() -> None:
    ledger = _ledger()
    ledger.acknowledge([("c-1", "k1")], 200.0)
    assert ledger.local_usage(SCOPE, 300.0, None, 1e9) == LocalUsage(10.0)
    assert ledger.local_usage(SCOPE, 200.0 + 3600.0, None, 0.0) is None


def test_a_set_settles_by_time_alone_whatever_the_count() -> None:
    ledger = UsageLedger(settle_s=3600.0)
    ledger.record(SCOPE, "s1", value=5.0, at=100.0, is_set=True)
    ledger.acknowledge([("c-1", "s1")], 200.0, {("c-1", "s1"): 5.0})
    assert ledger.local_usage(SCOPE, 300.0, None, 50.0) == LocalUsage(0.0, absolute=5.0)


def test_a_record_read_from_the_outbox_with_its_count_settles_the_same() -> None:
    ledger = UsageLedger(settle_s=3600.0)
    ledger.record(SCOPE, "k1", value=10.0, at=100.0, acked_at=200.0, counted=90.0)
    assert ledger.local_usage(SCOPE, 300.0, None, 90.0) is None


def test_the_generation_moves_with_every_change_and_only_then() -> None:
    ledger = _ledger()
    before = ledger.generation
    ledger.record(SCOPE, "k1", value=10.0, at=100.0)  # known: no change
    ledger.acknowledge([("c-1", "unknown")], acked_at=200.0)
    ledger.forget([("c-1", "unknown")])
    ledger.local_usage(SCOPE, None, None)
    assert ledger.generation == before  # a sync that found nothing keeps every judgement
    ledger.record(SCOPE, "k2", value=1.0, at=101.0)
    assert ledger.generation == before + 1
    ledger.acknowledge([("c-1", "k1")], acked_at=200.0)
    assert ledger.generation == before + 2
    ledger.forget([("c-1", "k2")])
    assert ledger.generation == before + 3


def test_the_same_key_for_two_customers_is_two_records() -> None:
    ledger = UsageLedger(settle_s=3600.0)
    ledger.record(("a", None, "api_calls"), "k", value=1.0, at=100.0)
    ledger.record(("b", None, "api_calls"), "k", value=2.0, at=100.0)
    ledger.forget([("a", "k")])  # a's record was dead-lettered, b's was not
    ledger.acknowledge([("b", "k")], 200.0)
    assert ledger.local_usage(("a", None, "api_calls"), None, None) is None
    assert ledger.local_usage(("b", None, "api_calls"), 150.0, None) == LocalUsage(2.0)


def _held_by(ledger: UsageLedger, work: Callable[[UsageLedger], object]) -> int:
    """Bytes the ledger holds after ``work`` that it did not hold before (tracemalloc)."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        work(ledger)
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


SETTLED_BYTES = 64 * 1024  # what may stay once everything settled, however many reported


def _reported_and_acknowledged(
    ledger: UsageLedger, scopes: list[tuple[str, None, str]], acked_at: float
) -> None:
    """One unit for each customer, under the key "k" (each customer's own), acknowledged."""
    for scope in scopes:
        ledger.record(scope, "k", value=1.0, at=100.0)
    ledger.acknowledge([(customer, "k") for customer, _, _ in scopes], acked_at)


@pytest.mark.parametrize("customers", [1_000, 10_000])
def test_usage_checked_after_it_settled_leaves_nothing_held(customers: int) -> None:
    """Issue 28 #6: a tally that has nothing left to count goes at once."""
    scopes = [(f"c-{n}", None, "api_calls") for n in range(customers)]

    def report_acknowledge_check(ledger: UsageLedger) -> None:
        _reported_and_acknowledged(ledger, scopes, 200.0)
        for scope in scopes:  # a snapshot fetched settle_s after the acknowledgement
            assert ledger.local_usage(scope, 230.0, None) is None

    assert _held_by(UsageLedger(settle_s=30.0), report_acknowledge_check) < SETTLED_BYTES


@pytest.mark.parametrize("customers", [1_000, 10_000])
def test_acknowledged_usage_no_check_reads_is_forgotten_when_the_outbox_forgets_it(
    customers: int,
) -> None:
    """Issue 28 #6: 10,000 customers' usage, acknowledged and settled, held ~26 MiB for ever
    because a tally was dropped only when a check of that exact scope read it."""
    scopes = [(f"c-{n}", None, "api_calls") for n in range(customers)]

    def report_acknowledge(ledger: UsageLedger) -> None:
        _reported_and_acknowledged(ledger, scopes, 200.0)
        # Still counted for a snapshot that does not have it, while the outbox keeps it:
        assert ledger.local_usage(scopes[0], 150.0, None) == LocalUsage(1.0)
        later = 200.0 + DEFAULT_KEEP_ACKED_S + EXPIRY_STEP_S
        ledger.record(("c-new", None, "api_calls"), "k", value=1.0, at=later)
        ledger.acknowledge([("c-new", "k")], later)  # any acknowledgement sweeps the old

    ledger = UsageLedger(settle_s=30.0)
    assert _held_by(ledger, report_acknowledge) < SETTLED_BYTES
    assert len(ledger) == 1  # c-new's, acknowledged just now
    assert ledger.local_usage(scopes[0], 150.0, None) is None  # no process counts it now
