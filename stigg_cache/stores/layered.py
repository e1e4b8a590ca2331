"""L1 (decoded snapshots in memory, bounded LRU) in front of an L2 store.

Failure rule: a fault of L2 or a corrupt entry is a miss, reported through
``on_fault(event, error)`` and never raised; ``on_fault("store_recovered",
None)`` follows the first success after a failure. Ages are re-based on the monotonic clock when
an entry is loaded, so a wall-clock jump cannot make data look fresher.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import attrs

from stigg_cache import _fork
from stigg_cache._clock import Clock
from stigg_cache._codec import SNAPSHOT_PREFIX, decode_snapshot, encode_snapshot, snapshot_key
from stigg_cache._memory_only import refuse_io
from stigg_cache.core.engine import FUTURE_SKEW_S
from stigg_cache.errors import CorruptEntryError, StoreError, TamperedEntryError
from stigg_cache.models import Snapshot
from stigg_cache.stores.base import MISSING, Store, lease_of

DEFAULT_L1_MAX_ENTRIES = 100_000
DEFAULT_L1_MAX_BYTES = 256 * 1024 * 1024  # of stored (JSON) form; decoded snapshots take less
RECOUNT_S = 60.0  # how often status() may have L2's snapshots counted (in the background)
# A snapshot L1 holds past its freshness is compared with the store's at most this often:
# the lag with which a process notices a sibling's refresh.
L2_RECHECK_S = 1.0
MAX_RECHECKED = 10_000  # scopes remembered for that; forgotten all at once beyond
_LEASE_PREFIX = "refresh:"

ScopeKey = tuple[str, str | None]


@attrs.frozen
class CachedSnapshot:
    """A snapshot with the monotonic time of its fetch."""

    snapshot: Snapshot
    fetched_mono: float
    dated_in_future: bool = False
    size: int = attrs.field(default=0, eq=False)
    """Bytes of the snapshot's stored form: what the L1 byte budget counts."""
    warm: dict[str, list[Any]] = attrs.field(factory=dict, eq=False, repr=False)
    """Answers prepared for this snapshot by the client's fast path."""


class SnapshotCache:
    """Read-through L1 over a persistent store, for snapshots only."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        on_fault: Callable[[str, Exception | None], None],
        max_entries: int = DEFAULT_L1_MAX_ENTRIES,
        max_bytes: int = DEFAULT_L1_MAX_BYTES,
    ) -> None:
        self.store = store
        self._clock = clock
        self._on_fault = on_fault
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self.l1_bytes = 0
        self.l1: OrderedDict[ScopeKey, CachedSnapshot] = OrderedDict()
        """Decoded snapshots; read without a lock (OrderedDict calls are atomic under the GIL)."""
        self._lock = threading.Lock()
        self._failing: set[str] = set()  # faults not yet followed by a success of their kind
        self._rechecked: dict[ScopeKey, float] = {}  # time.monotonic() of each scope's recheck
        self._counted: int | None = None  # snapshots in L2 when last counted
        self._recount_at = 0.0  # time.monotonic() of the next count
        self._counting = threading.Lock()  # held while a count runs
        # Called (with I/O allowed) when a scope enters L1: the client reads the customer's
        # local usage then, so a check that L1 answers needs no I/O for it.
        self.on_held: Callable[[ScopeKey], None] = _nothing
        _fork.renew_after_fork(self, SnapshotCache._renew)

    def _renew(self) -> None:
        """In a forked child: locks of its own (a count under way in the parent is not here)."""
        self._lock = threading.Lock()
        self._counting = threading.Lock()

    def peek(self, scope: ScopeKey) -> CachedSnapshot | None:
        """The snapshot held in L1 for a scope (no lock, no I/O), marked recently used."""
        entry = self.l1.get(scope)
        if entry is not None:
            try:  # noqa: SIM105 - hot path: cheaper than contextlib.suppress
                self.l1.move_to_end(scope)
            except KeyError:  # evicted by another thread meanwhile: still a valid answer
                pass
        return entry

    def get(self, customer_id: str, resource_id: str | None) -> CachedSnapshot | None:
        """The cached snapshot of a scope, from L1 or else L2; ``None`` on a miss."""
        scope = (customer_id, resource_id)
        entry = self.peek(scope)
        if entry is not None:
            return entry
        refuse_io()
        entry = self._load(customer_id, resource_id)
        if entry is not None:
            self._remember(scope, entry)
        return entry

    def put(self, snapshot: Snapshot, fetched_mono: float) -> CachedSnapshot:
        """Hold a fresh snapshot in L1 and write it through to L2."""
        entry, value = self.hold(snapshot, fetched_mono)
        self.persist(snapshot, value)
        return entry

    def hold(self, snapshot: Snapshot, fetched_mono: float) -> tuple[CachedSnapshot, bytes]:
        """Hold a fresh snapshot in L1; returns it and its stored form, for :meth:`persist`."""
        value = encode_snapshot(snapshot)
        entry = CachedSnapshot(snapshot, fetched_mono, size=len(value))
        self._remember((snapshot.customer_id, snapshot.resource_id), entry)
        return entry, value

    def persist(self, snapshot: Snapshot, value: bytes) -> bool:
        """Write a held snapshot through to L2; whether it was written (a busy or failing
        store is reported, not raised)."""
        key = snapshot_key(snapshot.customer_id, snapshot.resource_id)
        try:
            self.store.put(key, value)
        except StoreError as error:
            self._failed("store_write_failed", error)
            return False
        self._worked("store_write_failed")
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
        entry = self._load(*scope, report=report)
        if entry is None or entry.snapshot.fetched_at <= since:
            return None
        if held is None or entry.snapshot.fetched_at > held.snapshot.fetched_at:
            self._remember(scope, entry)
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
            return lease_of(self.store, _LEASE_PREFIX + snapshot_key(*scope), owner, ttl_s)
        except StoreError as error:
            self._on_fault("store_lease_failed", error)
            return None

    def invalidate(self, customer_id: str, resource_id: str | None) -> None:
        """Forget a scope in L1 and L2."""
        refuse_io()
        with self._lock:
            dropped = self.l1.pop((customer_id, resource_id), None)
            if dropped is not None:
                self.l1_bytes -= dropped.size
        try:
            self.store.delete(snapshot_key(customer_id, resource_id))
        except StoreError as error:
            self._failed("store_write_failed", error)

    def count(self) -> int | None:
        """Snapshots held in L2 as last counted (``None``: not yet, or the store cannot say).

        Counting walks every key (seconds at a million): it runs on a thread of its
        own at most once every ``RECOUNT_S``, never in the caller (``status()``).
        """
        now = time.monotonic()
        if now >= self._recount_at and self._counting.acquire(blocking=False):
            self._recount_at = now + RECOUNT_S
            threading.Thread(target=self._recount, daemon=True, name="stigg-cache-count").start()
        return self._counted

    def _recount(self) -> None:
        try:
            self._counted = sum(1 for _ in self.store.keys(SNAPSHOT_PREFIX))
        except StoreError as error:
            self._counted = None
            self._failed("store_read_failed", error)
        except Exception:  # the store closed under it (the client closed): no figure
            self._counted = None
        finally:
            self._counting.release()

    def clear_l1(self) -> None:
        """Drop every decoded snapshot held in memory (L2 is untouched)."""
        with self._lock:
            self.l1.clear()
            self.l1_bytes = 0

    @property
    def l1_size(self) -> int:
        """Snapshots held in memory."""
        return len(self.l1)

    def _failed(self, event: str, error: StoreError) -> None:
        self._failing.add(event)
        self._on_fault(event, error)

    def _worked(self, event: str) -> None:
        """A success of one kind: a read that works proves nothing about writes."""
        if event in self._failing:
            self._failing.discard(event)
            if not self._failing:
                self._on_fault("store_recovered", None)

    def _remember(self, scope: ScopeKey, entry: CachedSnapshot) -> None:
        with self._lock:
            replaced = self.l1.get(scope)
            if replaced is not None:
                self.l1_bytes -= replaced.size
            self.l1[scope] = entry
            self.l1.move_to_end(scope)
            self.l1_bytes += entry.size
            # Least recently used first, by count and by bytes; the newest always stays.
            while len(self.l1) > 1 and (
                len(self.l1) > self._max_entries or self.l1_bytes > self._max_bytes
            ):
                _, evicted = self.l1.popitem(last=False)
                self.l1_bytes -= evicted.size
        if replaced is None:
            self.on_held(scope)

    def _load(
        self, customer_id: str, resource_id: str | None, *, report: bool = True
    ) -> CachedSnapshot | None:
        """The store's snapshot of a scope; a bad entry is a miss, reported if ``report``."""
        on_fault = self._on_fault if report else _unreported
        try:
            value = self.store.get(snapshot_key(customer_id, resource_id))
        except CorruptEntryError as error:
            tampered = isinstance(error, TamperedEntryError)
            on_fault("snapshot_tampered" if tampered else "store_entry_unusable", error)
            return None
        except StoreError as error:
            self._failed("store_read_failed", error)
            return None
        self._worked("store_read_failed")
        if value is MISSING:
            return None
        try:
            snapshot = decode_snapshot(value)
        except CorruptEntryError as error:
            on_fault("store_entry_unusable", error)
            return None
        if snapshot.customer_id != customer_id or snapshot.resource_id != resource_id:
            on_fault(
                "store_entry_unusable", StoreError("snapshot stored under another scope's key")
            )
            return None
        age = self._clock.time() - snapshot.fetched_at
        in_future = age < -FUTURE_SKEW_S
        fetched_mono = self._clock.monotonic() - max(age, 0.0)
        return CachedSnapshot(snapshot, fetched_mono, in_future, size=len(value))


def _nothing(_scope: ScopeKey) -> None:
    pass


def _unreported(event: str, error: Exception | None) -> None:
    """A fault seen on a quiet look: the look that reports it is elsewhere."""
