"""A store as the snapshot cache uses it, its availability watched.

Failure rule: a fault of the store or a corrupt entry is a miss (or a write not done),
reported through ``on_fault(fault, error)`` (a :class:`StoreFault`) and never raised;
``on_fault(StoreFault.RECOVERED, None)`` follows the first success after a read or a
write failed.
"""

from __future__ import annotations

import enum
from collections.abc import Callable

from stigg_cache.core.terms import ScopeKey
from stigg_cache.errors import CorruptEntryError, StoreError, TamperedEntryError
from stigg_cache.stores._codec import snapshot_key
from stigg_cache.stores.base import MISSING, Store, fence_of, generation_of, put_fenced


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


class MonitoredStore:
    """The snapshots of one key space in ``store``, read and written without raising.

    ``space`` is prefixed to every key (an environment that does not own the store
    keeps its snapshots apart under its own; ``""``: the store's own names).
    """

    def __init__(self, store: Store, on_fault: OnFault, space: str = "") -> None:
        self.store = store
        self.space = space
        self._on_fault = on_fault
        self._failing: set[StoreFault] = set()  # faults not yet followed by a success of their kind

    def key(self, scope: ScopeKey) -> str:
        """The store key of a scope's snapshot, in this space."""
        return self.space + snapshot_key(*scope)

    def read(self, scope: ScopeKey, *, report: bool = True) -> bytes | None:
        """A scope's stored entry; ``None``: none, or a fault. A bad entry is reported
        only if ``report`` (a quiet look leaves it to the look that reports it)."""
        try:
            value = self.store.get(self.key(scope))
        except CorruptEntryError as error:
            if report:
                tampered = isinstance(error, TamperedEntryError)
                self.report(StoreFault.TAMPERED if tampered else StoreFault.ENTRY_UNUSABLE, error)
            return None
        except StoreError as error:
            self.failed(StoreFault.READ_FAILED, error)
            return None
        self._worked(StoreFault.READ_FAILED)
        return None if value is MISSING else value

    def write(self, scope: ScopeKey, value: bytes, generation: int | None) -> bool | None:
        """Store a scope's entry: if ``generation`` is given, only while the store's
        generation of the scope is still that one (not invalidated since). Whether it was
        written; ``None``: the store failed."""
        key = self.key(scope)
        try:
            if generation is None:
                self.store.put(key, value)
            elif not put_fenced(self.store, key, value, generation):
                return False
        except StoreError as error:
            self.failed(StoreFault.WRITE_FAILED, error)
            return None
        self._worked(StoreFault.WRITE_FAILED)
        return True

    def generation(self, scope: ScopeKey) -> int | None:
        """The store's generation of a scope (``None``: it could not say)."""
        try:
            return generation_of(self.store, self.key(scope))
        except StoreError as error:
            self.failed(StoreFault.READ_FAILED, error)
            return None

    def fence(self, scope: ScopeKey) -> None:
        """Move the store's generation of a scope on and forget its entry."""
        try:
            fence_of(self.store, self.key(scope))
        except StoreError as error:
            self.failed(StoreFault.WRITE_FAILED, error)

    def failed(self, fault: StoreFault, error: StoreError) -> None:
        """The store failed: reported, and ``RECOVERED`` once it works again."""
        self._failing.add(fault)
        self._on_fault(fault, error)

    def report(self, fault: StoreFault, error: Exception | None) -> None:
        """A fault that says nothing of the store's health (one entry, a busy lease)."""
        self._on_fault(fault, error)

    def _worked(self, fault: StoreFault) -> None:
        """A success of one kind: a read that works proves nothing about writes."""
        if fault in self._failing:
            self._failing.discard(fault)
            if not self._failing:
                self._on_fault(StoreFault.RECOVERED, None)
