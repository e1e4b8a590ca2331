"""The journal of offline decisions is the host's, kept in its outbox (#29 item 7).

Workers answer checks offline; a worker killed during the outage, or closed and
started again (a deploy), still has its decisions in the report; a sibling that
reconciles reports the others' decisions; two reconciling at once report each
decision once. The Redis plugin runs these tests on Redis (``store_url``).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import time
from pathlib import Path
from typing import Any

import attrs

from stigg_cache import ReconcileReport, ResilientClient, Source
from stigg_cache._engine.journal import HostJournal
from stigg_cache._support.clock import SYSTEM_CLOCK
from stigg_cache._support.log import FaultLog
from stigg_cache.core.engine import CheckKind, CheckRequest
from stigg_cache.core.reconcile import OfflineDecision, from_journal_row, journal_row
from stigg_cache.outbox import default_outbox_url, open_outbox
from stigg_cache.outbox.base import SharedJournal
from stigg_cache.testing import runtime_of
from stigg_cache.testing.fake import FakeMode, FakeStigg, metered
from tests.forking import child_result, fork_child
from tests.helpers import client_on, eventually, metered_fallback

OVER_LIMIT = 10  # each customer has used 10 of 5: every offline grant is contradicted


def _client(fake: FakeStigg, store_url: str) -> ResilientClient:
    return client_on(fake, store_url, policy=metered_fallback(1e9), check_timeout=0.5)


def _customers(fake: FakeStigg, prefix: str, count: int) -> list[str]:
    names = [f"{prefix}{n}" for n in range(count)]
    for name in names:
        fake.set_customer(name, [metered("api_calls", limit=5, usage=OVER_LIMIT)])
    return names


def _offline_checks(client: ResilientClient, customers: list[str], times: int = 2) -> None:
    """Stigg is down: the policy grants each check (and each is journaled)."""
    for _ in range(times):
        for customer in customers:
            assert client.get_metered_entitlement(customer_id=customer, feature_id="api_calls")


def _in_the_hosts_journal(client: ResilientClient) -> None:
    """Wait until what this worker counted is in the host's journal (added in the background)."""
    eventually(lambda: not runtime_of(client).parts.journal.pending)


def _summary(report: ReconcileReport | None) -> dict[str, Any]:
    assert report is not None
    return {
        "checked": report.decisions_checked,
        "dropped": report.decisions_dropped,
        "contradicted": sorted(c.customer_id for c in report.contradictions),
        "granted_but_denied": report.granted_but_denied,
    }


def _killed_during_the_outage(work: Any) -> None:
    """Fork a worker that does ``work`` and is then killed (``kill -9``, no clean-up)."""
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        signal.alarm(30)
        try:
            work()
        finally:
            os.kill(os.getpid(), signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status), status
    assert os.WTERMSIG(status) == signal.SIGKILL


def test_a_worker_restarted_mid_outage_still_has_its_decisions_reported(
    fake: FakeStigg, store_url: str
) -> None:
    crashed, deployed, restarted = (
        _customers(fake, "crashed-", 3),
        _customers(fake, "deployed-", 3),
        _customers(fake, "restarted-", 2),
    )
    fake.set_mode(FakeMode.DOWN)

    def crashing_worker() -> None:
        client = _client(fake, store_url)
        _offline_checks(client, crashed)
        _in_the_hosts_journal(client)  # at most half a second after the checks

    def deployed_worker() -> None:
        client = _client(fake, store_url)
        _offline_checks(client, deployed)
        client.close()  # a restart closes it: nothing counted is left behind

    _killed_during_the_outage(crashing_worker)
    assert child_result(fork_child(deployed_worker)) is None
    with _client(fake, store_url) as client:  # the worker started again, still offline
        _offline_checks(client, restarted)
        fake.set_mode(FakeMode.UP)
        assert _summary(client.reconcile(timeout=20)) == {
            "checked": 2 * 8,
            "dropped": 0,
            "contradicted": sorted(crashed + deployed + restarted),
            "granted_but_denied": 2 * 8,
        }


def test_decisions_on_their_way_to_the_hosts_journal_are_still_pending(tmp_path: Path) -> None:
    """A worker waiting for its decisions to be in the host's journal (before it may be
    killed) waits while they are on their way: here another process holds the outbox's
    write lock, so the addition that took them out of memory has not written them yet."""
    path = tmp_path / "cache-outbox.db"
    outbox = open_outbox(default_outbox_url(f"sqlite:///{tmp_path}/cache.db"))
    assert isinstance(outbox, SharedJournal)
    journal = HostJournal(outbox, FaultLog(SYSTEM_CLOCK))
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")  # a sibling's write, slow under load
        decision = _kind("a", 1, time.time(), 0.0)
        journal.record(decision.first_at, decision.request, decision.source, True)
        eventually(lambda: journal._memory.empty)  # taken by the addition, which waits
        assert journal.pending
        holder.execute("COMMIT")
        eventually(lambda: not journal.pending)
        rows, uncovered = outbox.journal_take()
        assert [from_journal_row(row) for row in rows] == [
            attrs.evolve(decision, last_at=decision.first_at)
        ]
        assert uncovered == 0
    finally:
        holder.close()
        journal.close()
        outbox.close()


def test_a_sibling_reconciling_reports_the_other_workers_decisions(
    fake: FakeStigg, store_url: str
) -> None:
    customers = _customers(fake, "c-", 4)
    fake.set_mode(FakeMode.DOWN)
    with _client(fake, store_url) as client:
        _offline_checks(client, customers)
        _in_the_hosts_journal(client)
        fake.set_mode(FakeMode.UP)

        def sibling() -> dict[str, Any]:
            with _client(fake, store_url) as own:
                return _summary(own.reconcile(timeout=20))

        assert child_result(fork_child(sibling)) == {
            "checked": 8,
            "dropped": 0,
            "contradicted": customers,
            "granted_but_denied": 8,
        }
        assert _summary(client.reconcile(timeout=20))["checked"] == 0  # reported once


def test_two_workers_reconciling_at_once_report_each_decision_once(
    fake: FakeStigg, store_url: str, tmp_path: Path
) -> None:
    customers = _customers(fake, "c-", 40)
    fake.set_mode(FakeMode.DOWN)
    with _client(fake, store_url) as client:
        _offline_checks(client, customers)
        _in_the_hosts_journal(client)
    fake.set_mode(FakeMode.UP)
    go = tmp_path / "go"

    def reconciling() -> dict[str, Any]:
        with _client(fake, store_url) as own:
            eventually(go.exists)
            return _summary(own.reconcile(timeout=20))

    first, second = fork_child(reconciling), fork_child(reconciling)
    go.touch()
    reports = [child_result(first), child_result(second)]
    assert sum(r["checked"] for r in reports) == 80
    assert sum(r["granted_but_denied"] for r in reports) == 80
    listed = [customer for r in reports for customer in r["contradicted"]]
    assert sorted(listed) == sorted(customers)  # each customer's decisions in one report


def _kind(customer: str, count: int, first: float, last: float) -> OfflineDecision:
    request = CheckRequest(CheckKind.METERED, customer, "api_calls", "r-1", 2.0, ("a",))
    return OfflineDecision(request, Source.POLICY, True, count, first, last)


def test_the_hosts_journal_sums_alike_decisions_within_its_bound_and_is_taken_once(
    store_url: str,
) -> None:
    outbox = open_outbox(default_outbox_url(store_url))
    try:
        assert isinstance(outbox, SharedJournal)
        rows = [journal_row(_kind("a", 2, 10.5, 11.25)), journal_row(_kind("b", 1, 12.0, 12.0))]
        outbox.journal_add(rows, 0, size=2, chars=1_000)
        more = [journal_row(_kind("a", 3, 9.0, 20.0)), journal_row(_kind("c", 4, 13.0, 13.0))]
        outbox.journal_add(more, 5, size=2, chars=1_000)  # "c": a third kind, past the bound
        taken, uncovered = outbox.journal_take()
        read = [from_journal_row(row) for row in sorted(taken)]
        assert read == [
            _kind("a", 5, 9.0, 20.0),
            _kind("b", 1, 12.0, 12.0),
        ]
        assert uncovered == 5 + 4
        assert outbox.journal_take() == ([], 0)
    finally:
        outbox.close()


def test_the_hosts_journal_keeps_the_usage_each_decision_counted_and_reads_older_rows(
    store_url: str,
) -> None:
    """Alike decisions that counted other usage are other kinds; a row the previous version
    wrote (its key without usage) still loads, as a decision that counted none."""
    older = journal_row(_kind("a", 2, 10.0, 11.0))
    key = json.loads(older[0])
    assert len(key) == 8  # as the previous version wrote it: no usage
    outbox = open_outbox(default_outbox_url(store_url))
    try:
        assert isinstance(outbox, SharedJournal)
        at = [attrs.evolve(_kind("a", 1, 12.0 + used, 12.0 + used), used=used) for used in (0, 1)]
        outbox.journal_add([older, *map(journal_row, at)], 0, size=10, chars=1_000)
        outbox.journal_add([journal_row(at[1])], 0, size=10, chars=1_000)
        taken, uncovered = outbox.journal_take()
        read = [from_journal_row(row) for row in taken]
        assert len(read) == 3
        assert set(read) == {_kind("a", 2, 10.0, 11.0), at[0], attrs.evolve(at[1], count=2)}
        assert uncovered == 0
    finally:
        outbox.close()
