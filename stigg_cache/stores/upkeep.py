"""Upkeep of the store under a snapshot cache: pruning, counting and refresh leases.

Pruning and counting may take seconds on a large store: each runs on a thread of its
own, one run at a time, at most once per period, started when a caller's step says it
is due and never in that caller. Faults are reported through the
:class:`~stigg_cache.stores.monitored.MonitoredStore`, never raised in the background.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable

from stigg_cache._support import fork
from stigg_cache.core.terms import ScopeKey
from stigg_cache.errors import StoreError
from stigg_cache.stores._codec import SNAPSHOT_PREFIX
from stigg_cache.stores.base import Pruning, count_keys, lease_of
from stigg_cache.stores.l1 import L1
from stigg_cache.stores.monitored import MonitoredStore, StoreFault

RECOUNT_S = 60.0  # how often status() may have L2's snapshots counted (in the background)
PRUNE_S = 60.0  # how often a process that writes snapshots sweeps its store (in the background)
PRUNE_BATCH = 1_000  # entries per pass: one short write transaction
PRUNE_PASSES = 20  # passes per sweep at most
TOUCH_MAX = 10_000  # snapshots a sweep notes as read lately, at most (one short write)
LEASE_PREFIX = "refresh:"


class Periodic:
    """Runs ``work`` on a thread of its own, one run at a time, at most once every
    ``every_s`` (background upkeep that a caller only asks for)."""

    def __init__(self, every_s: float, work: Callable[[], None], name: str) -> None:
        self._every_s = every_s
        self._work = work
        self._name = name
        self._next = 0.0  # time.monotonic() from which the next run may start
        self._running = threading.Lock()  # held while a run is under way

    def start_if_due(self) -> None:
        now = time.monotonic()
        if now >= self._next and self._running.acquire(blocking=False):
            self._next = now + self._every_s
            threading.Thread(target=self._run, daemon=True, name=self._name).start()

    def due_now(self) -> None:
        """The next :meth:`start_if_due` starts a run (whenever the last one was)."""
        self._next = 0.0

    def running(self) -> bool:
        return self._running.locked()

    def renew(self) -> None:
        """In a forked child: no run is under way here, whatever the parent was doing."""
        self._running = threading.Lock()

    def _run(self) -> None:
        try:
            self._work()
        finally:
            self._running.release()


class Upkeep:
    """The store's upkeep for one snapshot cache.

    ``keep_for()``: how long a stored snapshot is of use (the policy's longest
    ``max_staleness``); with it, the store is swept of older ones (and, with
    ``store_max_bytes``, of the least recently used beyond that size).
    """

    def __init__(
        self,
        store: MonitoredStore,
        l1: L1,
        keep_for: Callable[[], float] | None,
        store_max_bytes: int | None,
    ) -> None:
        self._store = store
        self._l1 = l1
        self._keep_for = keep_for
        self._store_max_bytes = store_max_bytes
        self._kept: float | None = None  # what the store was last told
        self._loaded: set[ScopeKey] = set()  # loaded from the store since the last sweep
        self.pruned = 0  # snapshots swept away by this process
        self._counted: int | None = None  # snapshots in L2 when last counted
        self.sweeping = Periodic(PRUNE_S, self._swept, "stigg-cache-prune")
        self.counting = Periodic(RECOUNT_S, self._recount, "stigg-cache-count")
        try:  # before the first write: a store that expires entries itself sets their time
            self._keeping()
        except StoreError as error:
            store.failed(StoreFault.WRITE_FAILED, error)
        fork.renew_after_fork(self, Upkeep._renew)

    def _renew(self) -> None:
        """In a forked child: a count or sweep under way in the parent is not here."""
        self.counting.renew()
        self.sweeping.renew()

    def loaded(self, scope: ScopeKey) -> None:
        """A scope's snapshot was read from the store: the next sweep tells the store."""
        if len(self._loaded) < TOUCH_MAX:
            self._loaded.add(scope)
        self.sweeping.start_if_due()

    def sweep(self) -> int:
        """Drop snapshots no check can use any more, in passes of bounded work; how many
        went. Runs by itself in the background at most every ``PRUNE_S`` while snapshots
        are written or read from the store.

        First the store hears which snapshots this process read lately (those in L1
        asked for since they entered, and those loaded since the last sweep): beyond
        ``store_max_bytes`` the least recently read go first, in every process's view.

        Raises:
            StoreError: the store failed.
        """
        if not self._keeping():
            return 0
        store = self._store.store
        assert isinstance(store, Pruning)
        read = self._read_lately()
        if read:
            store.touch(read)
        gone = 0
        for _ in range(PRUNE_PASSES):
            swept = store.prune(PRUNE_BATCH)
            gone += swept
            if swept < PRUNE_BATCH:
                break
        self.pruned += gone
        return gone

    def count(self) -> int | None:
        """Snapshots held in L2 as last counted (``None``: not yet, or the store cannot say).

        Counting may walk every key (seconds at a million, unless the store counts them
        itself, as Redis does): it runs on a thread of its own at most once every
        ``RECOUNT_S``, never in the caller (``status()``).
        """
        self.counting.start_if_due()
        return self._counted

    def lease(self, scope: ScopeKey, owner: str, ttl_s: float) -> bool | None:
        """Whether ``owner`` may refresh ``scope`` now (the store's lease; see
        :class:`~stigg_cache.stores.base.Leases`).

        A store without leases says yes. ``None``: the store could not say in
        time (busy with other processes' writes, most likely theirs refreshing);
        the caller waits a little for a sibling's refresh, then fetches anyway.
        Counted and logged as a fault, but not an unhealthy store: reads and writes
        of snapshots report its health.
        """
        try:
            return lease_of(self._store.store, LEASE_PREFIX + self._store.key(scope), owner, ttl_s)
        except StoreError as error:
            self._store.report(StoreFault.LEASE_FAILED, error)
            return None

    def _read_lately(self) -> list[str]:
        loaded, self._loaded = self._loaded, set()  # one that lands in the old set meanwhile
        # is noted at its next load: a hint for pruning, not worth a lock on the read path
        used = self._l1.referenced()
        return [self._store.key(scope) for scope in itertools.islice({*loaded, *used}, TOUCH_MAX)]

    def _keeping(self) -> bool:
        """Tell the store how long snapshots are of use (again when the policy changed it);
        false if it cannot prune or nothing says."""
        store = self._store.store
        if self._keep_for is None or not isinstance(store, Pruning):
            return False
        seconds = self._keep_for()
        if seconds != self._kept:
            store.keep_for(self._store.space + SNAPSHOT_PREFIX, seconds, self._store_max_bytes)
            self._kept = seconds
        return True

    def _swept(self) -> None:
        try:
            self.sweep()
        except StoreError as error:
            self._store.failed(StoreFault.WRITE_FAILED, error)
        except Exception:  # the store closed under it (the client closed): nothing to do
            return

    def _recount(self) -> None:
        try:
            self._counted = count_keys(self._store.store, self._store.space + SNAPSHOT_PREFIX)
        except StoreError as error:
            self._counted = None
            self._store.failed(StoreFault.READ_FAILED, error)
        except Exception:  # the store closed under it (the client closed): no figure
            self._counted = None
