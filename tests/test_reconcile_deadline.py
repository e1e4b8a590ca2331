"""Reconciliation keeps its deadline however many customers an outage touched (#17)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from stigg_cache import ReconcileReport, ResilientClient
from stigg_cache.core.breaker import CircuitBreaker
from stigg_cache.testing.fake import FakeMode, FakeStigg
from tests.forking import in_child
from tests.helpers import client_on, eventually, metered_fallback

TOUCHED = 1_500
TIMEOUT_S = 1.0


def test_a_big_outage_is_reported_by_the_deadline_and_every_customer_accounted_for(
    fake: FakeStigg, tmp_path: Path
) -> None:
    client = client_on(
        fake,
        tmp_path,
        policy=metered_fallback(1e9),
        breaker=CircuitBreaker(failure_threshold=1, base_backoff_s=0.1, max_backoff_s=0.2),
    )
    reports: list[ReconcileReport] = []
    done = threading.Event()

    def reported(report: ReconcileReport) -> None:
        reports.append(report)
        done.set()

    client.on_reconcile(reported)
    fake.set_mode(FakeMode.DOWN)
    client.get_boolean_entitlement(customer_id="acme", feature_id="sso")  # opens the breaker
    assert client.status().breaker == "open"
    client.report_usage_bulk(
        [{"customer_id": f"c{n}", "feature_id": "api_calls", "value": 1} for n in range(TOUCHED)]
    )
    fake.set_mode(FakeMode.SLOW, delay_s=0.3)  # back, and slow
    time.sleep(0.3)  # past the breaker's backoff: the first refresh probes
    started = time.monotonic()
    report = client.reconcile(timeout=TIMEOUT_S)
    if report is None:  # one started by itself as Stigg came back: wait for its report
        eventually(done.is_set, within_s=60)
        report = reports[-1]
    took = time.monotonic() - started
    assert report.customers_refreshed + report.customers_failed >= TOUCHED
    assert report.customers_failed > 0  # it ran out of time, and said so
    # Within the deadline plus one fetch's wait; unbounded before (a token per customer).
    assert took < TIMEOUT_S + 10, took
    client.close()


SLOW_S = 0.3
OUTAGE = 30


def _outage_then_reconcile(client: ResilientClient, prefix: str) -> list[int]:
    """Checks of OUTAGE customers answered while Stigg is too slow for them, then a
    reconciliation: [decisions checked, customers refreshed] by its deadline."""
    reports: list[ReconcileReport] = []
    client.on_reconcile(reports.append)
    for n in range(OUTAGE):  # the first times out and opens the breaker: the rest fall back
        client.get_boolean_entitlement(customer_id=f"{prefix}{n}", feature_id="sso")
    time.sleep(0.25)  # past the breaker's backoff
    report = client.reconcile(timeout=2.0)
    if report is None:  # one started by itself as Stigg answered again
        eventually(lambda: bool(reports), within_s=20)
        report = reports[-1]
    return [report.decisions_checked, report.customers_refreshed]


def test_refreshes_run_several_at_a_time_within_the_budget_in_every_worker(
    fake: FakeStigg, tmp_path: Path
) -> None:
    # One refresh at a time against a Stigg answering in 0.3 s: at most 7 by a 2 s deadline.
    client = client_on(
        fake,
        tmp_path,
        check_timeout=0.1,
        breaker=CircuitBreaker(failure_threshold=1, base_backoff_s=0.1, max_backoff_s=0.2),
    )
    fake.set_mode(FakeMode.SLOW, delay_s=SLOW_S)
    checked, refreshed = in_child(lambda: _outage_then_reconcile(client, "child-"))
    assert checked == OUTAGE
    assert refreshed >= 2 * 2.0 / SLOW_S, refreshed
    checked, refreshed = _outage_then_reconcile(client, "parent-")
    assert checked == OUTAGE
    assert refreshed >= 2 * 2.0 / SLOW_S, refreshed
    client.close()
