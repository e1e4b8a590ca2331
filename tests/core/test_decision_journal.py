"""The journal of offline decisions covers every one of them within a bound (issue 17).

Alike decisions (one request, one tier, one answer) are counted together with
their first and last time, so an outage of many customers is reported whole;
past the bound, the report says how many it could not cover.
"""

from __future__ import annotations

import time
from pathlib import Path

from stigg_cache import ConnectionState, ReconcileReport, Source
from stigg_cache.core.breaker import CircuitBreaker
from stigg_cache.core.engine import CheckKind, CheckRequest
from stigg_cache.core.reconcile import DecisionJournal
from stigg_cache.testing.fake import FakeMode, FakeStigg, metered
from tests.forking import child_result, fork_child
from tests.helpers import client_on, eventually, metered_fallback


def _request(customer: str) -> CheckRequest:
    return CheckRequest(CheckKind.METERED, customer, "api_calls", requested_usage=1.0)


def test_alike_decisions_are_counted_together_with_their_first_and_last_time() -> None:
    journal = DecisionJournal(size=2)
    for at in range(5):
        journal.record(100.0 + at, _request("a"), Source.POLICY, True)
    journal.record(200.0, _request("b"), Source.STALE, False)
    journal.record(201.0, _request("c"), Source.STALE, False)  # a third kind: past the bound
    journal.record(202.0, _request("a"), Source.POLICY, True)  # a known kind still counts
    kinds, uncovered = journal.take()
    assert [(k.request.customer_id, k.count, k.first_at, k.last_at) for k in kinds] == [
        ("b", 1, 200.0, 200.0),
        ("a", 6, 100.0, 202.0),  # most recent last
    ]
    assert uncovered == 1
    assert journal.take() == ([], 0)  # taking empties it


def test_an_outage_of_many_customers_is_reported_whole_once_across_workers(
    fake: FakeStigg, tmp_path: Path
) -> None:
    customers = [f"c{n}" for n in range(300)]
    for customer in customers:
        fake.set_customer(customer, [metered("api_calls", limit=5, usage=10)])  # over the limit
    client = client_on(
        fake,
        tmp_path,
        policy=metered_fallback(1e9),
        breaker=CircuitBreaker(failure_threshold=1, base_backoff_s=0.1, max_backoff_s=0.2),
    )
    reports: list[ReconcileReport] = []
    client.on_reconcile(reports.append)
    checked, back = tmp_path / "checked", tmp_path / "back"

    def outage() -> None:
        """Four offline checks of every customer (each granted by the policy)."""
        for _ in range(4):
            for customer in customers:
                client.get_metered_entitlement(customer_id=customer, feature_id="api_calls")

    def reconciled() -> list[int]:
        """Every report of this process, summed, once Stigg is back: it may reconcile by
        itself (a check or the flusher's idle probe finds Stigg back), after a jittered
        pause of up to 1 s; then once more by hand, for what is left."""
        eventually(lambda: client.status().state is ConnectionState.CONNECTED, within_s=20)
        time.sleep(1.2)  # past the jittered pause of one started by itself
        while client.reconcile(timeout=20) is None:  # one under way: then once more
            time.sleep(0.1)
        return [
            sum(r.decisions_checked for r in reports),
            sum(r.decisions_dropped for r in reports),
            sum(r.granted_but_denied for r in reports),
            sum(r.customers_failed for r in reports),
        ]

    def worker() -> list[int]:
        outage()
        checked.touch()
        eventually(back.exists)
        return reconciled()

    fake.set_mode(FakeMode.DOWN)
    pid = fork_child(worker)  # a worker forked from the client, sharing its outbox
    eventually(checked.exists, within_s=20)
    outage()  # and the parent's, at the same time
    fake.set_mode(FakeMode.UP)
    back.touch()
    # 1,200 decisions in each worker, every one covered and reported once, by whichever
    # worker took it from the host's journal: granted offline and contradicted (each
    # customer was over the limit).
    child, parent = child_result(pid), reconciled()
    assert [a + b for a, b in zip(child, parent, strict=True)] == [2400, 0, 2400, 0]
    client.close()
