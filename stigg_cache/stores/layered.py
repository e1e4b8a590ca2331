"""L1 (decoded snapshots in memory, bounded LRU) in front of an L2 store.

Failure rule: a fault of L2 or a corrupt entry is a miss, reported through
``on_fault(fault, error)`` (a :class:`StoreFault`) and never raised;
``on_fault(StoreFault.RECOVERED, None)`` follows the first success after a
failure. Ages are re-based on the monotonic clock when an entry is loaded, so a
wall-clock jump cannot make data look fresher.
"""

from __future__ import annotations

import enum
import itertools
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

import attrs

from stigg_cache._support import fork
from stigg_cache._support.clock import Clock
from stigg_cache._support.memory_only import refuse_io
from stigg_cache.core.admission import FrequencySketch
from stigg_cache.core.engine import FUTURE_SKEW_S
from stigg_cache.core.terms import CachedSnapshot, ScopeKey
from stigg_cache.errors import CorruptEntryError, StoreError, TamperedEntryError
from stigg_cache.models import Snapshot
from stigg_cache.stores._codec import (
    SNAPSHOT_PREFIX,
    OutdatedEntryError,
    decode_snapshot,
    encode_snapshot,
    snapshot_key,
)
from stigg_cache.stores.base import (
    MISSING,
    Pruning,
    Store,
    count_keys,
    fence_of,
    generation_of,
    lease_of,
    put_fenced,
)


class StoreFault(enum.StrEnum):
    """What went wrong with L2 (its value names the fault in logs and ``status()``)."""

    READ_FAILED = "store_read_failed"
    WRITE_FAILED = "store_write_failed"
    LEASE_FAILED = "store_lease_failed"  # too busy to grant a refresh lease: a fetch anyway
    ENTRY_UNUSABLE = "store_entry_unusable"  # one corrupt or misplaced entry
    TAMPERED = "snapshot_tampered"  # one entry failed its signature
    RECOVERED = "store_recovered"  # the first success after a read or write failed

    @property
    def store_unhealthy(self) -> bool:
        """Whether it says the store itself fails (not one bad entry, not a busy lease)."""
        return self in (StoreFault.READ_FAILED, StoreFault.WRITE_FAILED)


OnFault = Callable[[StoreFault, Exception | None], None]
DEFAULT_L1_MAX_ENTRIES = 100_000
DEFAULT_L1_MAX_BYTES = 256 * 1024 * 1024  # of memory held: decoded snapshots, prepared answers
# Measured (tracemalloc, 20-feature snapshots of 4.4 KB stored): 9.8 KB held once decoded in
# L1; the fast path's first prepared answer of a feature adds 1.75 KB, a further check kind
# of it 0.15 KB. What the byte budget counts, so it bounds the memory L1 really holds.
DECODED_PER_STORED_BYTE = 2.25
PREPARED_FEATURE_BYTES = 1_750
PREPARED_KIND_BYTES = 150
SWEEP = 64  # entries L1's eviction sweep passes over (asked for lately) before it evicts
RECOUNT_S = 60.0  # how often status() may have L2's snapshots counted (in the background)
PRUNE_S = 60.0  # how often a process that writes snapshots sweeps its store (in the background)
PRUNE_BATCH = 1_000  # entries per pass: one short write transaction
PRUNE_PASSES = 20  # passes per sweep at most
TOUCH_MAX = 10_000  # snapshots a sweep notes as read lately, at most (one short write)
# A snapshot L1 holds past its freshness is compared with the store's at most this often:
# the lag with which a process notices a sibling's refresh.
L2_RECHECK_S = 1.0
MAX_RECHECKED = 10_000  # scopes remembered for that; forgotten all at once beyond
_LEASE_PREFIX = "refresh:"


MAX_FENCED = 10_000  # scopes whose invalidations this process counts; all forgotten beyond


@attrs.frozen
class Fence:
    """What a fetch notes before it asks Stigg (:meth:`SnapshotCache.fence`): once the scope
    is invalidated after that, in this process or another sharing the store, what the
    fetch brings back is held and stored nowhere."""

    local: tuple[int, int]  # this process's invalidations of the scope (epoch, count)
    stored: int | None  # the store's generation (None: it could not say, its fault reported)


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
        self._space = space
        self._keep_for = keep_for
        self._store_max_bytes = store_max_bytes
        self._kept: float | None = None  # what the store was last told
        self._sweeping = _Upkeep(PRUNE_S, self._swept, "stigg-cache-prune")
        self.pruned = 0  # snapshots swept away by this process
        self._loaded: set[ScopeKey] = set()  # loaded from the store since the last sweep
        self._clock = clock
        # A stored snapshot's fetch time is a wall time: it is placed on this process's
        # monotonic timeline with the offset of the two taken once, here, so a later step
        # of the wall clock (NTP, a VM resume) never makes stored data younger.
        self._wall_offset = clock.time() - clock.monotonic()
        self._on_fault = on_fault
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self.l1_bytes = 0
        self._sketch = FrequencySketch(max_entries)  # how often each scope missed L1 lately
        self.l1: OrderedDict[ScopeKey, CachedSnapshot] = OrderedDict()
        """Decoded snapshots; read without a lock (OrderedDict calls are atomic under the GIL)."""
        self._lock = threading.Lock()
        self._failing: set[StoreFault] = set()  # faults not yet followed by a success of their kind
        self._rechecked: dict[ScopeKey, float] = {}  # time.monotonic() of each scope's recheck
        self._invalidated: dict[ScopeKey, int] = {}  # invalidations here, by scope
        self._epoch = 0  # moves on when those are forgotten: no earlier fence matches then
        self._counted: int | None = None  # snapshots in L2 when last counted
        self._counting = _Upkeep(RECOUNT_S, self._recount, "stigg-cache-count")
        # Called (with I/O allowed) when a scope enters L1: the client reads the customer's
        # local usage then, so a check that L1 answers needs no I/O for it.
        self._on_held = on_held or _nothing
        try:  # before the first write: a store that expires entries itself sets their time
            self._keeping()
        except StoreError as error:
            self._failed(StoreFault.WRITE_FAILED, error)
        fork.renew_after_fork(self, SnapshotCache._renew)

    def _renew(self) -> None:
        """In a forked child: locks of its own (a count or sweep under way in the parent is
        not here)."""
        self._lock = threading.Lock()
        self._counting.renew()
        self._sweeping.renew()

    def peek(self, scope: ScopeKey) -> CachedSnapshot | None:
        """The snapshot held in L1 for a scope (no lock, no I/O), marked recently used."""
        entry = self.l1.get(scope)
        if entry is not None:
            entry.referenced = True  # the eviction sweep passes it over once
        return entry

    def get(self, customer_id: str, resource_id: str | None) -> CachedSnapshot | None:
        """The cached snapshot of a scope, from L1 or else L2; ``None`` on a miss."""
        scope = (customer_id, resource_id)
        entry = self.peek(scope)
        if entry is not None:
            return entry
        refuse_io()
        self._sketch.add(scope)  # a miss; hits are credited by the eviction sweep
        fence = self._local_fence(scope)
        entry = self._load(customer_id, resource_id)
        if entry is not None:
            if len(self._loaded) < TOUCH_MAX:  # the next sweep tells the store it was read
                self._loaded.add(scope)
            self._remember(scope, entry, fence)
            self._sweeping.start_if_due()
        return entry

    def put(self, snapshot: Snapshot, fetched_mono: float) -> CachedSnapshot:
        """Hold a fresh snapshot in L1 and write it through to L2."""
        entry, value = self.hold(snapshot, fetched_mono)
        self.persist(snapshot, value)
        return entry

    def fence(self, scope: ScopeKey) -> Fence:
        """What a fetch of ``scope`` notes before it asks Stigg (reads the store)."""
        local = self._local_fence(scope)
        try:
            stored: int | None = generation_of(self.store, self._key(*scope))
        except StoreError as error:
            self._failed(StoreFault.READ_FAILED, error)
            stored = None
        return Fence(local, stored)

    def fenced_since(self, scope: ScopeKey, fence: Fence) -> bool:
        """Whether ``scope`` was invalidated since ``fence`` was noted, here or by any process
        sharing the store (reads the store; one that cannot say counts as not fenced, its
        fault reported, as for :meth:`fence`)."""
        if self._local_fence(scope) != fence.local:
            return True
        if fence.stored is None:
            return False
        try:
            return generation_of(self.store, self._key(*scope)) != fence.stored
        except StoreError as error:
            self._failed(StoreFault.READ_FAILED, error)
            return False

    def hold(
        self, snapshot: Snapshot, fetched_mono: float, fence: Fence | None = None
    ) -> tuple[CachedSnapshot, bytes]:
        """Hold a fresh snapshot in L1 (unless invalidated since ``fence``); returns it and
        its stored form, for :meth:`persist`."""
        value = encode_snapshot(snapshot)
        entry = CachedSnapshot(snapshot, fetched_mono, size=len(value))
        local = None if fence is None else fence.local
        self._remember((snapshot.customer_id, snapshot.resource_id), entry, local)
        return entry, value

    def persist(self, snapshot: Snapshot, value: bytes, fence: Fence | None = None) -> bool:
        """Write a held snapshot through to L2 (unless the scope was invalidated since
        ``fence``, by any process: then L1 lets it go too); whether it was written (a busy
        or failing store is reported, not raised)."""
        scope = (snapshot.customer_id, snapshot.resource_id)
        key = self._key(*scope)
        try:
            if fence is None or fence.stored is None:  # a store that cannot say: as before
                self.store.put(key, value)
            elif not put_fenced(self.store, key, value, fence.stored):
                self._let_go(scope, snapshot)
                return False
        except StoreError as error:
            self._failed(StoreFault.WRITE_FAILED, error)
            return False
        self._worked(StoreFault.WRITE_FAILED)
        self._sweeping.start_if_due()
        return True

    def _let_go(self, scope: ScopeKey, snapshot: Snapshot) -> None:
        """Drop ``snapshot`` from L1 if it is still the one held for ``scope``."""
        with self._lock:
            held = self.l1.get(scope)
            if held is not None and held.snapshot is snapshot:
                del self.l1[scope]
                self.l1_bytes -= held.held_bytes

    def _local_fence(self, scope: ScopeKey) -> tuple[int, int]:
        return self._epoch, self._invalidated.get(scope, 0)

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
        assert isinstance(self.store, Pruning)
        read = self._read_lately()
        if read:
            self.store.touch(read)
        gone = 0
        for _ in range(PRUNE_PASSES):
            swept = self.store.prune(PRUNE_BATCH)
            gone += swept
            if swept < PRUNE_BATCH:
                break
        self.pruned += gone
        return gone

    def _read_lately(self) -> list[str]:
        loaded, self._loaded = self._loaded, set()  # one that lands in the old set meanwhile
        # is noted at its next load: a hint for pruning, not worth a lock on the read path
        used = [scope for scope, entry in list(self.l1.items()) if entry.referenced]
        return [self._key(*scope) for scope in itertools.islice({*loaded, *used}, TOUCH_MAX)]

    def _keeping(self) -> bool:
        """Tell the store how long snapshots are of use (again when the policy changed it);
        false if it cannot prune or nothing says."""
        if self._keep_for is None or not isinstance(self.store, Pruning):
            return False
        seconds = self._keep_for()
        if seconds != self._kept:
            self.store.keep_for(self._space + SNAPSHOT_PREFIX, seconds, self._store_max_bytes)
            self._kept = seconds
        return True

    def _swept(self) -> None:
        try:
            self.sweep()
        except StoreError as error:
            self._failed(StoreFault.WRITE_FAILED, error)
        except Exception:  # the store closed under it (the client closed): nothing to do
            return

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
        fence = self._local_fence(scope)
        entry = self._load(*scope, report=report)
        if entry is None or entry.snapshot.fetched_at <= since:
            return None
        if held is None or entry.snapshot.fetched_at > held.snapshot.fetched_at:
            self._remember(scope, entry, fence)
        return entry

    def lease(self, scope: ScopeKey, owner: str, ttl_s: float) -> bool | None:
        """Whether ``owner`` may refresh ``scope`` now (the store's lease; see :class:`Leases`).

        A store without leases says yes. ``None``: the store could not say in
        time (busy with other processes' writes, most likely theirs refreshing);
        the caller waits a little for a sibling's refresh, then fetches anyway.
        Counted and logged as a fault, but not an unhealthy store: reads and writes
        of snapshots report its health.
        """
        try:
            return lease_of(self.store, _LEASE_PREFIX + self._key(*scope), owner, ttl_s)
        except StoreError as error:
            self._on_fault(StoreFault.LEASE_FAILED, error)
            return None

    def invalidate(self, customer_id: str, resource_id: str | None) -> None:
        """Forget a scope in L1 and L2, and fence it: fetches and reads of it under way
        (here or in any process sharing the store) are kept nowhere when they land."""
        refuse_io()
        scope = (customer_id, resource_id)
        with self._lock:
            if len(self._invalidated) >= MAX_FENCED:
                self._invalidated.clear()
                self._epoch += 1
            self._invalidated[scope] = self._invalidated.get(scope, 0) + 1
            dropped = self.l1.pop(scope, None)
            if dropped is not None:
                self.l1_bytes -= dropped.held_bytes
        try:
            fence_of(self.store, self._key(customer_id, resource_id))
        except StoreError as error:
            self._failed(StoreFault.WRITE_FAILED, error)

    def _key(self, customer_id: str, resource_id: str | None) -> str:
        """The store key of a scope's snapshot, in this cache's space."""
        return self._space + snapshot_key(customer_id, resource_id)

    def count(self) -> int | None:
        """Snapshots held in L2 as last counted (``None``: not yet, or the store cannot say).

        Counting may walk every key (seconds at a million, unless the store counts them
        itself, as Redis does): it runs on a thread of its own at most once every
        ``RECOUNT_S``, never in the caller (``status()``).
        """
        self._counting.start_if_due()
        return self._counted

    def _recount(self) -> None:
        try:
            self._counted = count_keys(self.store, self._space + SNAPSHOT_PREFIX)
        except StoreError as error:
            self._counted = None
            self._failed(StoreFault.READ_FAILED, error)
        except Exception:  # the store closed under it (the client closed): no figure
            self._counted = None

    def clear_l1(self) -> None:
        """Drop every decoded snapshot held in memory (L2 is untouched)."""
        with self._lock:
            self.l1.clear()
            self.l1_bytes = 0

    @property
    def l1_size(self) -> int:
        """Snapshots held in memory."""
        return len(self.l1)

    def _failed(self, event: StoreFault, error: StoreError) -> None:
        self._failing.add(event)
        self._on_fault(event, error)

    def _worked(self, event: StoreFault) -> None:
        """A success of one kind: a read that works proves nothing about writes."""
        if event in self._failing:
            self._failing.discard(event)
            if not self._failing:
                self._on_fault(StoreFault.RECOVERED, None)

    def _remember(
        self, scope: ScopeKey, entry: CachedSnapshot, fence: tuple[int, int] | None = None
    ) -> None:
        """Hold ``entry`` in L1 if it replaces the scope's, fits, or wins admission against
        the entry the sweep would evict (asked for more often lately: TinyLFU); never if
        the scope was invalidated here since ``fence`` (noted before it was read)."""
        entry.held_bytes = int(entry.size * DECODED_PER_STORED_BYTE)
        with self._lock:
            if fence is not None and fence != self._local_fence(scope):
                return
            replaced = self.l1.get(scope)
            # A newcomer is the sweep's first candidate until asked for again (a scan's
            # customers go before the ones in use); a refreshed entry keeps its standing.
            entry.referenced = replaced is not None and replaced.referenced
            if replaced is None and self._full(entry.held_bytes):
                victim = self._victim()
                if victim is not None and not self._sketch.admits(scope, victim):
                    return  # turned away: answered from L2 until asked for more often
            if replaced is not None:
                self.l1_bytes -= replaced.held_bytes
            self.l1[scope] = entry
            self.l1_bytes += entry.held_bytes
            self._evict(keep=scope)
        if replaced is None:
            self._on_held(scope)

    def grew(self, scope: ScopeKey, entry: CachedSnapshot, added: int) -> None:
        """``entry`` holds ``added`` bytes more (the fast path prepared an answer on it)."""
        with self._lock:
            if self.l1.get(scope) is entry:
                entry.held_bytes += added
                self.l1_bytes += added
                self._evict(keep=scope)

    def _full(self, adding: int) -> bool:
        return len(self.l1) >= self._max_entries or self.l1_bytes + adding > self._max_bytes

    def _victim(self) -> ScopeKey | None:
        """The entry to evict next (CLOCK: oldest first; one asked for since the last pass
        goes to the back instead, credited in the sketch, at most ``SWEEP`` of them per
        look). Under the lock."""
        for _ in range(SWEEP):
            scope = next(iter(self.l1), None)
            if scope is None:
                return None
            entry = self.l1[scope]
            if not entry.referenced:
                return scope
            entry.referenced = False
            self._sketch.add(scope)  # hits count here, once per pass: a hit stays a lookup
            self.l1.move_to_end(scope)
        return next(iter(self.l1), None)

    def _evict(self, *, keep: ScopeKey) -> None:
        """Evict until within the budget, by count and by bytes; ``keep`` stays."""
        while len(self.l1) > 1 and (
            len(self.l1) > self._max_entries or self.l1_bytes > self._max_bytes
        ):
            victim = self._victim()
            assert victim is not None  # more than one entry
            if victim == keep:
                self.l1.move_to_end(victim)
                victim = next(iter(self.l1))
            self.l1_bytes -= self.l1.pop(victim).held_bytes

    def _load(
        self, customer_id: str, resource_id: str | None, *, report: bool = True
    ) -> CachedSnapshot | None:
        """The store's snapshot of a scope; a bad entry is a miss, reported if ``report``."""
        on_fault = self._on_fault if report else _unreported
        try:
            value = self.store.get(self._key(customer_id, resource_id))
        except CorruptEntryError as error:
            tampered = isinstance(error, TamperedEntryError)
            on_fault(StoreFault.TAMPERED if tampered else StoreFault.ENTRY_UNUSABLE, error)
            return None
        except StoreError as error:
            self._failed(StoreFault.READ_FAILED, error)
            return None
        self._worked(StoreFault.READ_FAILED)
        if value is MISSING:
            return None
        try:
            snapshot = decode_snapshot(value)
        except CorruptEntryError as error:
            # An earlier version's entry is a plain miss: the fetch that follows replaces it.
            if not isinstance(error, OutdatedEntryError):
                on_fault(StoreFault.ENTRY_UNUSABLE, error)
            return None
        if snapshot.customer_id != customer_id or snapshot.resource_id != resource_id:
            on_fault(
                StoreFault.ENTRY_UNUSABLE, StoreError("snapshot stored under another scope's key")
            )
            return None
        now = self._clock.monotonic()
        fetched_mono = snapshot.fetched_at - self._wall_offset  # on this process's timeline
        in_future = fetched_mono - now > FUTURE_SKEW_S
        return CachedSnapshot(snapshot, min(fetched_mono, now), in_future, size=len(value))


class _Upkeep:
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


def _nothing(_scope: ScopeKey) -> None:
    pass


def _unreported(event: StoreFault, error: Exception | None) -> None:
    """A fault seen on a quiet look: the look that reports it is elsewhere."""
