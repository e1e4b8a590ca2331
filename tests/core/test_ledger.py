"""The usage ledger's settling rules: by time, and sooner by Stigg's own count (DESIGN §8)."""

from __future__ import annotations

from stigg_cache.core.ledger import LocalUsage, UsageLedger

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
    assert ledger.local_usage(SCOPE, 250.0, None, 80.0) == LocalUsage(10.0)  # not in it yet
    assert ledger.local_usage(SCOPE, 300.0, None, 90.0) is None  # in it: counted once
    assert ledger.local_usage(SCOPE, 400.0, None, 80.0) is None  # and it stays settled


def test_a_snapshot_fetched_before_the_acknowledgement_proves_nothing() -> None:
    ledger = _ledger()
    ledger.acknowledge([("c-1", "k1")], 200.0, {("c-1", "k1"): 90.0})
    assert ledger.local_usage(SCOPE, 150.0, None, 95.0) == LocalUsage(10.0)


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
