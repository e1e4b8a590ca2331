"""The snapshot cache: L1 (decoded snapshots in memory, bounded) in front of an L2 store.

Three parts, each on its own: :class:`~stigg_cache.stores.l1.L1` holds decoded
snapshots, :class:`~stigg_cache.stores.monitored.MonitoredStore` reads and writes L2
and reports its faults, :class:`~stigg_cache.stores.upkeep.Upkeep` prunes and counts L2
and grants refresh leases. :class:`SnapshotCache` joins them: what a check reads, a
fetch writes and an invalidation forgets.

Failure rule: a fault of L2 or a corrupt entry is a miss, reported through
``on_fault(fault, error)`` (a :class:`StoreFault`) and never raised;
``on_fault(StoreFault.RECOVERED, None)`` follows the first success after a
failure. Ages are re-based on the monotonic clock when an entry is loaded, so a
wall-clock jump cannot make data look fresher.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable

import attrs

from stigg_cache._support.clock import Clock
from stigg_cache._support.memory_only import refuse_io
from stigg_cache.core.engine import FUTURE_SKEW_S
from stigg_cache.core.terms import CachedSnapshot, ScopeKey
from stigg_cache.errors import CorruptEntryError, StoreError
from stigg_cache.models import Snapshot
from stigg_cache.stores._codec import OutdatedEntryError, decode_snapshot, encode_snapshot
from stigg_cache.stores.base import Store
from stigg_cache.stores.l1 import L1, LocalFence
from stigg_cache.stores.monitored import MonitoredStore, OnFault, StoreFault
from stigg_cache.stores.upkeep import Upkeep

__all__ = [
    "DECODED_PER_STORED_BYTE",
    "DEFAULT_L1_MAX_BYTES",
    "DEFAULT_L1_MAX_ENTRIES",
    "L2_RECHECK_S",
    "MAX_RECHECKED",
    "PREPARED_FEATURE_BYTES",
    "PREPARED_KIND_BYTES",
    "Fence",
    "Held",
    "SnapshotCache",
]

DEFAULT_L1_MAX_ENTRIES = 100_000
DEFAULT_L1_MAX_BYTES = 256 * 1024 * 1024  # of memory held: decoded snapshots, prepared answers
# Measured (tracemalloc, 20-feature snapshots of 4.4 KB stored): 9.8 KB held once decoded in
# L1; the fast path's first prepared answer of a feature adds 1.75 KB, a further check kind
# of it 0.15 KB. What the byte budget counts, so it bounds the memory L1 really holds.
DECODED_PER_STORED_BYTE = 2.25
PREPARED_FEATURE_BYTES = 1_750
PREPARED_KIND_BYTES = 150
# A snapshot L1 holds past its freshness is compared with the store's at most this often:
# the lag with which a process notices a sibling's refresh.
L2_RECHECK_S = 1.0
MAX_RECHECKED = 10_000  # scopes remembered for that; forgotten all at once beyond


@attrs.frozen
class Fence:
    """What a fetch notes before it asks Stigg (:meth:`SnapshotCache.fence`): once the scope
    is invalidated after that, in this process or another sharing the store, what the
    fetch brings back is held and stored nowhere."""

    local: LocalFence  # this process's invalidations of the scope
    stored: int | None  # the store's generation (None: it could not say, its fault reported)


@attrs.frozen
class Held:
    """A fresh snapshot held in L1 (:meth:`SnapshotCache.hold`), and its stored form."""

    entry: CachedSnapshot
    value: bytes


class SnapshotCache:
    """Read-through L1 over a persistent store, for snapshots only.

    Invalidation fences a scope (:class:`~stigg_cache.stores.base.Fencing`): a
    fetch or a store read begun before it never lands in L1 or L2 afterwards.
    """

    def __init__(
        self,
        store: Store,
        clock: Clock,
        on_fault: OnFault,
        max_entries: int = DEFAULT_L1_MAX_ENTRIES,
        max_bytes: int = DEFAULT_L1_MAX_BYTES,
        *,
        keep_for: Callable[[], float] | None = None,
        store_max_bytes: int | None = None,
        on_held: Callable[[ScopeKey], None] | None = None,
        space: str = "",
    ) -> None:
        """``space``: prefixed to every key (an environment that does not own the store
        keeps its snapshots apart under its own; ``""``: the store's own names).
        ``keep_for()``: how long a stored snapshot is of use (the policy's longest
        ``max_staleness``); with it, the store is swept of older ones (and, with
        ``store_max_bytes``, of the least recently used beyond that size).
        ``on_held(scope)``: a scope's snapshot came into L1 (fetched or loaded)."""
        self.store = store
        self._clock = clock
        # A stored snapshot's fetch time is a wall time: it is placed on this process's
        # monotonic timeline with the offset of the two taken once, here, so a later step
        # of the wall clock (NTP, a VM resume) never makes stored data younger.
        self._wall_offset = clock.time() - clock.monotonic()
        # Called (with I/O allowed) when a scope enters L1: the client reads the customer's
        # local usage then, so a check that L1 answers needs no I/O for it.
        self.memory = L1(max_entries, max_bytes, on_held or _nothing)
        self.l2 = MonitoredStore(store, on_fault, space)
        self.upkeep = Upkeep(self.l2, self.memory, keep_for, store_max_bytes)
        self._rechecked: dict[ScopeKey, float] = {}  # time.monotonic() of each scope's recheck

    @property
    def l1(self) -> OrderedDict[ScopeKey, CachedSnapshot]:
        """Decoded snapshots; read without a lock (OrderedDict calls are atomic under the GIL)."""
        return self.memory.entries

    @property
    def l1_bytes(self) -> int:
        """Bytes L1's budget counts as held."""
        return self.memory.held_bytes

    @property
    def l1_size(self) -> int:
        """Snapshots held in memory."""
        return len(self.memory.entries)

    @property
    def pruned(self) -> int:
        """Snapshots swept away by this process."""
        return self.upkeep.pruned

    def peek(self, scope: ScopeKey) -> CachedSnapshot | None:
        """The snapshot held in L1 for a scope (no lock, no I/O), marked recently used."""
        return self.memory.peek(scope)

    def get(self, customer_id: str, resource_id: str | None) -> CachedSnapshot | None:
        """The cached snapshot of a scope, from L1 or else L2; ``None`` on a miss."""
        scope = (customer_id, resource_id)
        entry = self.memory.peek(scope)
        if entry is not None:
            return entry
        refuse_io()
        self.memory.missed(scope)
        fence = self.memory.fence(scope)
        entry = self._load(scope)
        if entry is not None:
            self.memory.remember(scope, entry, fence)
            self.upkeep.loaded(scope)
        return entry

    def put(self, snapshot: Snapshot, fetched_mono: float) -> CachedSnapshot:
        """Hold a fresh snapshot in L1 and write it through to L2."""
        held = self.hold(snapshot, fetched_mono)
        self.persist(snapshot, held.value)
        return held.entry

    def fence(self, scope: ScopeKey) -> Fence:
        """What a fetch of ``scope`` notes before it asks Stigg (reads the store)."""
        return Fence(self.memory.fence(scope), self.l2.generation(scope))

    def fenced_since(self, scope: ScopeKey, fence: Fence) -> bool:
        """Whether ``scope`` was invalidated since ``fence`` was noted, here or by any process
        sharing the store (reads the store; one that cannot say counts as not fenced, its
        fault reported, as for :meth:`fence`)."""
        if self.memory.fence(scope) != fence.local:
            return True
        if fence.stored is None:
            return False
        stored = self.l2.generation(scope)
        return stored is not None and stored != fence.stored

    def hold(self, snapshot: Snapshot, fetched_mono: float, fence: Fence | None = None) -> Held:
        """Hold a fresh snapshot in L1 (unless invalidated since ``fence``); returns it with
        its stored form, for :meth:`persist`."""
        value = encode_snapshot(snapshot)
        entry = _entry(snapshot, fetched_mono, size=len(value))
        local = None if fence is None else fence.local
        self.memory.remember((snapshot.customer_id, snapshot.resource_id), entry, local)
        return Held(entry, value)

    def persist(self, snapshot: Snapshot, value: bytes, fence: Fence | None = None) -> bool:
        """Write a held snapshot through to L2 (unless the scope was invalidated since
        ``fence``, by any process: then L1 lets it go too); whether it was written (a busy
        or failing store is reported, not raised)."""
        scope = (snapshot.customer_id, snapshot.resource_id)
        written = self.l2.write(scope, value, None if fence is None else fence.stored)
        if written is None:  # the store failed (reported)
            return False
        if not written:  # invalidated since the fence
            self.memory.let_go(scope, snapshot)
            return False
        self.upkeep.sweeping.start_if_due()
        return True

    def newer(self, scope: ScopeKey) -> CachedSnapshot | None:
        """The store's snapshot of a scope if a sibling process stored a newer one than L1's.

        A check looks at most once per ``L2_RECHECK_S`` per scope.
        """
        refuse_io()
        now = time.monotonic()
        if now - self._rechecked.get(scope, -math.inf) < L2_RECHECK_S:
            return None
        if len(self._rechecked) >= MAX_RECHECKED:
            self._rechecked.clear()
        self._rechecked[scope] = now
        held = self.l1.get(scope)
        return self.fetched_since(scope, -math.inf if held is None else held.snapshot.fetched_at)

    def fetched_since(
        self, scope: ScopeKey, since: float, *, report: bool = True
    ) -> CachedSnapshot | None:
        """A snapshot of a scope fetched after ``since`` (wall time), from L1 or the store.

        ``report=False`` is a quiet look (a fetch about to ask Stigg): a bad entry
        was reported by the check that started the fetch.
        """
        held = self.l1.get(scope)
        if held is not None and held.snapshot.fetched_at > since:
            return held  # another thread of this process brought it in meanwhile
        fence = self.memory.fence(scope)
        entry = self._load(scope, report=report)
        if entry is None or entry.snapshot.fetched_at <= since:
            return None
        if held is None or entry.snapshot.fetched_at > held.snapshot.fetched_at:
            self.memory.remember(scope, entry, fence)
        return entry

    def lease(self, scope: ScopeKey, owner: str, ttl_s: float) -> bool | None:
        """Whether ``owner`` may refresh ``scope`` now (:meth:`Upkeep.lease
        <stigg_cache.stores.upkeep.Upkeep.lease>`; ``None``: the store could not say)."""
        return self.upkeep.lease(scope, owner, ttl_s)

    def invalidate(self, customer_id: str, resource_id: str | None) -> None:
        """Forget a scope in L1 and L2, and fence it: fetches and reads of it under way
        (here or in any process sharing the store) are kept nowhere when they land."""
        refuse_io()
        scope = (customer_id, resource_id)
        self.memory.invalidate(scope)
        self.l2.fence(scope)

    def sweep(self) -> int:
        """Drop snapshots no check can use any more (:meth:`Upkeep.sweep
        <stigg_cache.stores.upkeep.Upkeep.sweep>`); how many went.

        Raises:
            StoreError: the store failed.
        """
        return self.upkeep.sweep()

    def count(self) -> int | None:
        """Snapshots held in L2 as last counted, in the background (:meth:`Upkeep.count
        <stigg_cache.stores.upkeep.Upkeep.count>`; ``None``: not yet, or it cannot say)."""
        return self.upkeep.count()

    def grew(self, scope: ScopeKey, entry: CachedSnapshot, added: int) -> None:
        """``entry`` holds ``added`` bytes more (the fast path prepared an answer on it)."""
        self.memory.grew(scope, entry, added)

    def clear_l1(self) -> None:
        """Drop every decoded snapshot held in memory (L2 is untouched)."""
        self.memory.clear()

    def _load(self, scope: ScopeKey, *, report: bool = True) -> CachedSnapshot | None:
        """The store's snapshot of a scope; a bad entry is a miss, reported if ``report``."""
        value = self.l2.read(scope, report=report)
        if value is None:
            return None
        try:
            snapshot = decode_snapshot(value)
        except CorruptEntryError as error:
            # An earlier version's entry is a plain miss: the fetch that follows replaces it.
            if report and not isinstance(error, OutdatedEntryError):
                self.l2.report(StoreFault.ENTRY_UNUSABLE, error)
            return None
        if (snapshot.customer_id, snapshot.resource_id) != scope:
            if report:
                misplaced = StoreError("snapshot stored under another scope's key")
                self.l2.report(StoreFault.ENTRY_UNUSABLE, misplaced)
            return None
        now = self._clock.monotonic()
        fetched_mono = snapshot.fetched_at - self._wall_offset  # on this process's timeline
        in_future = fetched_mono - now > FUTURE_SKEW_S
        return _entry(snapshot, min(fetched_mono, now), in_future, size=len(value))


def _entry(
    snapshot: Snapshot, fetched_mono: float, in_future: bool = False, *, size: int
) -> CachedSnapshot:
    """An entry for L1, its bytes counted as decoded."""
    entry = CachedSnapshot(snapshot, fetched_mono, in_future, size=size)
    entry.held_bytes = int(size * DECODED_PER_STORED_BYTE)
    return entry


def _nothing(_scope: ScopeKey) -> None:
    pass
