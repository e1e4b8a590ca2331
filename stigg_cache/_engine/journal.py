"""The host's journal of offline decisions: counted here, kept in the shared outbox.

A check made while Stigg is unreachable is counted in this process's memory
(:class:`~stigg_cache.core.reconcile.DecisionJournal`, no I/O on the check's
path); a thread of this process adds what it counted to the outbox's journal
(:class:`~stigg_cache.outbox.base.SharedJournal`) every ``JOURNAL_SYNC_S``, and
at close. A reconciliation, made by any process of the host, takes the whole
journal at once, so a worker restarted during an outage (its decisions added
before it went), or a sibling that reconciles, reports every decision once. An
outbox without a shared journal, or one that fails, leaves them here.
"""

from __future__ import annotations

import threading
from collections import deque

from stigg_cache._support import fork
from stigg_cache._support.log import FaultLog
from stigg_cache.core.engine import CheckRequest
from stigg_cache.core.reconcile import (
    DEFAULT_JOURNAL_CHARS,
    DEFAULT_JOURNAL_SIZE,
    DecisionJournal,
    OfflineDecision,
    from_journal_row,
    held_chars,
    journal_row,
)
from stigg_cache.errors import StoreError
from stigg_cache.models import Source
from stigg_cache.outbox.base import Outbox, SharedJournal

# A worker killed during an outage loses at most this long of its decisions (a restart
# that closes the client loses none); each process writes the journal this often at most.
JOURNAL_SYNC_S = 0.5
# Decisions on their way to the outbox stay in this process's bound until added, and are
# added a slice of the bound at a time (their rows are a copy), so that this process's
# share of the journal holds about its bound, however slow the outbox.
_SLICES = 16


class HostJournal:
    """Offline decisions of every process of the host; thread-safe."""

    def __init__(
        self,
        outbox: Outbox,
        faults: FaultLog,
        *,
        size: int = DEFAULT_JOURNAL_SIZE,
        chars: int = DEFAULT_JOURNAL_CHARS,
    ) -> None:
        self._shared = outbox if isinstance(outbox, SharedJournal) else None
        self._faults = faults
        self._size, self._chars = size, chars
        self._memory = DecisionJournal(size, chars)
        self._adding = threading.Lock()  # one addition to the outbox at a time
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = threading.Lock()
        fork.renew_after_fork(self, HostJournal._renew)

    def _renew(self) -> None:
        """In a forked child: the parent's decisions are the parent's to add."""
        self._memory = DecisionJournal(self._size, self._chars)
        self._adding = threading.Lock()
        self._stop = fork.renewed(self._stop)
        self._thread = None
        self._started = threading.Lock()

    @property
    def pending(self) -> bool:
        """Whether decisions counted here are not yet in the host's journal (or on their way)."""
        return not self._memory.empty or self._adding.locked()

    def record(
        self,
        at: float,
        request: CheckRequest,
        source: Source,
        has_access: bool,
        used: float | None = None,
    ) -> None:
        """Count one offline decision made at ``at`` (wall time), counting ``used``; no I/O."""
        self._memory.record(at, request, source, has_access, used)
        if self._shared is not None and self._thread is None:
            self._start()

    def take(self) -> tuple[list[OfflineDecision], int]:
        """Every offline decision of the host (this process's first added), most recent
        last, and how many were not covered; the journal empties."""
        self.add()
        whole = DecisionJournal(self._size, self._chars)
        if self._shared is not None:
            try:
                rows, uncovered = self._shared.journal_take()
            except StoreError as error:
                self._faults.report("stigg_cache.journal_failed", str(error))
                rows, uncovered = [], 0
            whole.add_uncovered(uncovered)
            for row in rows:
                decision = from_journal_row(row)
                if decision is None:
                    whole.add_uncovered(row[1])
                else:
                    whole.add(decision)
        left, dropped = self._memory.take()  # what the outbox would not take
        for decision in left:
            whole.add(decision)
        whole.add_uncovered(dropped)
        return whole.take()

    def add(self) -> None:
        """Add what this process counted to the host's journal (kept here if it fails)."""
        shared = self._shared
        if shared is None:
            return
        with self._adding:
            taken, uncovered = self._memory.take(hold=True)
            left = deque(taken)
            del taken
            while left or uncovered:
                batch = _batch(left, max(1, self._chars // _SLICES))
                if not self._added(shared, batch, uncovered):
                    left.extendleft(reversed(batch))
                    self._memory.release(left)
                    for kind in left:
                        self._memory.add(kind)
                    self._memory.add_uncovered(uncovered)
                    return
                self._memory.release(batch)
                batch.clear()
                uncovered = 0

    def _added(self, shared: SharedJournal, batch: list[OfflineDecision], uncovered: int) -> bool:
        """Whether ``batch`` (and ``uncovered``) went into the host's journal."""
        try:
            rows = [journal_row(kind) for kind in batch]
            shared.journal_add(rows, uncovered, size=self._size, chars=self._chars)
        except StoreError as error:
            self._faults.report("stigg_cache.journal_failed", str(error))
            return False
        return True

    def close(self) -> None:
        """Stop adding in the background; add what is left."""
        self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join()
        self.add()

    def _start(self) -> None:
        with self._started:
            if self._thread is not None or self._stop.is_set():
                return
            self._thread = threading.Thread(
                target=self._run, daemon=True, name="stigg-cache-journal"
            )
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(JOURNAL_SYNC_S):
            self.add()


def _batch(left: deque[OfflineDecision], chars: int) -> list[OfflineDecision]:
    """The first of ``left`` (one at least), up to about ``chars`` characters, taken off it."""
    batch: list[OfflineDecision] = []
    used = 0
    while left and (not batch or used < chars):
        batch.append(left.popleft())
        used += held_chars(batch[-1].request)
    return batch
