"""Reconciliation when Stigg returns: drain, refresh what was touched, report.

Refreshes are paced within Stigg's read limit (edge reads: 6,000 a minute per
API key) with jitter, most recently touched customer first, so a fleet
reconnecting at once does not turn recovery into a 429 storm (a fleet sharing
its outbox shares this budget too).
"""

from __future__ import annotations

import random
import threading
from collections import deque
from collections.abc import Callable

from stigg_cache._engine.fetcher import DEFAULT_BACKGROUND_FETCHES, Fetcher
from stigg_cache._engine.journal import HostJournal
from stigg_cache._engine.ledger import UsageService
from stigg_cache._support import fork
from stigg_cache._support.clock import Clock
from stigg_cache._support.log import FaultLog, logger
from stigg_cache.core.pacing import EDGE_READS_PER_MINUTE, RateBucket
from stigg_cache.core.reconcile import OfflineDecision, ReconcileReport, judge_offline
from stigg_cache.core.terms import CachedSnapshot, ScopeKey
from stigg_cache.errors import StiggUnavailableError, StoreError
from stigg_cache.models import Snapshot
from stigg_cache.outbox.flusher import pacing_bucket

REFRESH_SHARE = 0.5  # take at most half the read budget: live checks need the rest
REFRESH_BURST = 5.0
NOT_ASKED_WAIT_S = 0.05  # a refresh held back before asking Stigg is tried again after this
# Reads in flight at once (within the budget): a slow Stigg is not serial. They run on the
# fetcher's background slots, so checks needing Stigg's answer are never kept waiting for one.
REFRESH_PARALLEL = DEFAULT_BACKGROUND_FETCHES
ReportListener = Callable[[ReconcileReport], None]


class Reconciler:
    """Runs one reconciliation at a time and tells listeners the result."""

    def __init__(
        self,
        journal: HostJournal,
        usage: UsageService,
        fetcher: Fetcher,
        clock: Clock,
        faults: FaultLog,
        *,
        fetch_timeout_s: float,
        reads_per_minute: float = EDGE_READS_PER_MINUTE,
        sleep: Callable[[float], None] | None = None,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._journal = journal
        self._usage = usage
        self._fetcher = fetcher
        self._clock = clock
        self._faults = faults
        self._fetch_timeout_s = fetch_timeout_s
        self._rate = reads_per_minute / 60 * REFRESH_SHARE
        self._stop = threading.Event()
        self._own_sleep = sleep is None
        self._sleep = sleep or self._stop.wait
        self._jitter = jitter
        self._running = threading.Lock()
        self._background: list[threading.Thread] = []  # under _started
        self._started = threading.Lock()
        self._listeners: list[ReportListener] = []
        self.last_report: ReconcileReport | None = None
        fork.renew_after_fork(self, Reconciler._renew)

    def _renew(self) -> None:
        """In a forked child: no reconciliation runs here, whatever the parent was doing."""
        self._stop = fork.renewed(self._stop)
        if self._own_sleep:
            self._sleep = self._stop.wait
        self._running = threading.Lock()
        self._started = threading.Lock()
        self._background = []

    def subscribe(self, listener: ReportListener) -> None:
        """Call ``listener(report)`` after every reconciliation."""
        self._listeners.append(listener)

    def run(self, timeout_s: float) -> ReconcileReport | None:
        """Reconcile now; ``None`` if another reconciliation is under way."""
        if not self._running.acquire(blocking=False):
            return None
        try:
            report = self._reconcile(timeout_s)
        finally:
            self._running.release()
        self.last_report = report
        logger.info(
            "stigg_cache.reconciled: %d offline decisions checked, %d contradicted "
            "(%d granted but denied), %d customers refreshed, outbox drained: %s",
            report.decisions_checked,
            len(report.contradictions),
            report.granted_but_denied,
            report.customers_refreshed,
            report.outbox_drained,
            extra={"event": "stigg_cache.reconciled"},
        )
        for listener in list(self._listeners):
            try:
                listener(report)
            except Exception:
                logger.exception("stigg_cache.listener_failed")
        return report

    def run_in_background(self, timeout_s: float) -> None:
        """Start :meth:`run` on a daemon thread after a jittered pause (fleets spread out)."""
        if self._stop.is_set():
            return

        def delayed() -> None:
            self._sleep(self._jitter())
            if self._stop.is_set():
                return
            try:
                self.run(timeout_s)
            except StoreError as error:  # the outbox file failed: no caller to tell but the log
                if not self._stop.is_set():  # closed under it: nothing left to report to
                    self._faults.report("stigg_cache.reconcile_failed", str(error))

        thread = threading.Thread(target=delayed, daemon=True, name="stigg-cache-reconcile")
        with self._started:  # reconnections may be announced from two threads at once
            self._background = [t for t in self._background if t.is_alive()] + [thread]
            thread.start()  # under the lock: close() never sees a thread not yet started

    def close(self, timeout_s: float = 2.0) -> None:
        """Stop a reconciliation under way and wait for it (bounded), before its stores close."""
        self._stop.set()
        deadline = self._clock.monotonic() + timeout_s
        with self._started:
            started = list(self._background)
        for thread in started:
            thread.join(max(0.0, deadline - self._clock.monotonic()))

    def _reconcile(self, timeout_s: float) -> ReconcileReport:
        started = self._clock.time()
        deadline = self._clock.monotonic() + timeout_s
        flushed = self._usage.flusher.flush(timeout_s / 2, cancel=self._stop)
        entries, dropped = self._journal.take()
        fresh, failed = self._refresh(_most_recent_first(entries, self._usage.touched()), deadline)
        contradictions = judge_offline(
            entries, fresh, now_wall=self._clock.time(), reported=self._usage.reported(fresh)
        )
        return ReconcileReport(
            started_at=started,
            finished_at=self._clock.time(),
            decisions_checked=sum(entry.count for entry in entries),
            decisions_dropped=dropped,
            customers_refreshed=len(fresh),
            customers_failed=failed,
            outbox_drained=flushed.drained,
            outbox_pending=flushed.pending,
            contradictions=tuple(contradictions),
        )

    def _refresh(
        self, scopes: list[ScopeKey], deadline: float
    ) -> tuple[dict[ScopeKey, Snapshot], int]:
        """Refresh ``scopes`` in order, ``REFRESH_PARALLEL`` at a time, each read paced by the
        budget, none started past ``deadline`` (those count as failed): the report is due
        at its deadline, however many customers there are."""
        # A fleet sharing its outbox shares this budget too: all reconnect at once.
        bucket = pacing_bucket(self._usage.outbox, "refresh", self._rate, REFRESH_BURST)
        refreshes = _Refreshes(scopes, bucket)

        def worker() -> None:
            while (scope := self._next_scope(refreshes, deadline)) is not None:
                remaining = deadline - self._clock.monotonic()
                wait_s = min(remaining, self._fetch_timeout_s)
                result = self._fetcher.fetch(scope, wait_s, background=True)
                if refreshes.done(scope, result):  # held back (the half-open probe in flight)
                    self._sleep(min(max(remaining, 0.0), NOT_ASKED_WAIT_S))

        workers = [
            threading.Thread(target=worker, daemon=True, name="stigg-cache-reconcile-refresh")
            for _ in range(min(REFRESH_PARALLEL, len(scopes)))
        ]
        for thread in workers:
            thread.start()
        for thread in workers:  # each ends by the deadline plus one fetch's wait at most
            thread.join()
        return refreshes.fresh, len(scopes) - len(refreshes.fresh)

    def _next_scope(self, refreshes: _Refreshes, deadline: float) -> ScopeKey | None:
        """The next scope to refresh once the budget allows; ``None`` past the deadline."""
        while not self._stop.is_set():
            remaining = deadline - self._clock.monotonic()
            if remaining <= 0:
                return None
            scope, wait = refreshes.take(self._clock.monotonic())
            if not wait:
                return scope
            self._sleep(min(remaining, wait * (1 + self._jitter() / 10)))
        return None


class _Refreshes:
    """The scopes a reconciliation refreshes, handed out one per token of its budget."""

    def __init__(self, scopes: list[ScopeKey], bucket: RateBucket) -> None:
        self._pending = iter(scopes)
        self._again: deque[ScopeKey] = deque()  # held back before asking Stigg: asked again
        self._bucket = bucket
        self._lock = threading.Lock()  # a local bucket is not thread-safe
        self.fresh: dict[ScopeKey, Snapshot] = {}

    def take(self, now: float) -> tuple[ScopeKey | None, float]:
        """The next scope (``None``: none left), or the seconds until the budget allows one."""
        with self._lock:
            wait = self._bucket.take(1, now)
            if wait:
                return None, wait
            return (self._again.popleft() if self._again else next(self._pending, None)), 0.0

    def done(self, scope: ScopeKey, result: CachedSnapshot | StiggUnavailableError) -> bool:
        """Note a refresh's result; true if it was held back before asking (asked again)."""
        with self._lock:
            if isinstance(result, CachedSnapshot):
                self.fresh[scope] = result.snapshot
            elif result.not_asked:
                self._again.append(scope)
                return True
        return False


def _most_recent_first(entries: list[OfflineDecision], touched: list[ScopeKey]) -> list[ScopeKey]:
    order: dict[ScopeKey, None] = {}
    for entry in reversed(entries):
        order.setdefault((entry.request.customer_id, entry.request.resource_id), None)
    for scope in reversed(touched):
        order.setdefault(scope, None)
    return list(order)
