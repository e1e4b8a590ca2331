"""A store that fails on purpose: the N-th operation, every operation, or slowly.

As SQLite's own tests inject an I/O error at the N-th call, this wraps any
store and fails exactly where a test says, so every failure path of the
client can be reached without breaking a real disk:

    store = FaultyStore(open_store("sqlite:////tmp/test/cache.db"))
    store.fail_at(3)                 # the third operation from now raises StoreError
    store.fail_all(("get",))         # every get raises until store.heal()
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator

from stigg_cache.errors import StoreError
from stigg_cache.stores.base import Missing, Store, lease_of

OPERATIONS = ("get", "put", "delete", "keys", "lease")


class FaultyStore:
    """Wraps ``inner``; fails chosen operations with :class:`StoreError` (or delays them)."""

    def __init__(self, inner: Store) -> None:
        """Behaves exactly as ``inner`` until told otherwise."""
        self.inner = inner
        self.calls = 0
        self.failures = 0
        self._fail_at: int | None = None
        self._failing: frozenset[str] = frozenset()
        self._delay_s = 0.0
        self._lock = threading.Lock()

    def fail_at(self, nth: int) -> None:
        """The ``nth`` operation from now (1 = the next) fails, once."""
        with self._lock:
            self._fail_at = self.calls + nth

    def fail_all(self, operations: Iterable[str] = OPERATIONS) -> None:
        """Every call of ``operations`` fails until :meth:`heal`."""
        unknown = set(operations) - set(OPERATIONS)
        if unknown:
            raise ValueError(f"unknown operations {sorted(unknown)}; choose from {OPERATIONS}")
        self._failing = frozenset(operations)

    def slow(self, seconds: float) -> None:
        """Delay every operation (a disk or network store under pressure)."""
        self._delay_s = seconds

    def heal(self) -> None:
        """No more failures or delays."""
        with self._lock:
            self._fail_at, self._failing, self._delay_s = None, frozenset(), 0.0

    def _enter(self, operation: str) -> None:
        with self._lock:
            self.calls += 1
            due = self._fail_at is not None and self.calls == self._fail_at
            if due:
                self._fail_at = None
        if self._delay_s:
            time.sleep(self._delay_s)
        if due or operation in self._failing:
            self.failures += 1
            raise StoreError(f"injected fault: {operation} (call {self.calls})")

    def get(self, key: str) -> bytes | Missing:
        self._enter("get")
        return self.inner.get(key)

    def put(self, key: str, value: bytes) -> None:
        self._enter("put")
        self.inner.put(key, value)

    def delete(self, key: str) -> None:
        self._enter("delete")
        self.inner.delete(key)

    def keys(self, prefix: str = "") -> Iterator[str]:
        self._enter("keys")
        return self.inner.keys(prefix)

    def lease(self, key: str, owner: str, ttl_s: float) -> bool:
        """The inner store's lease (one without leases: always taken), faults included."""
        self._enter("lease")
        return lease_of(self.inner, key, owner, ttl_s)

    def close(self) -> None:
        self.inner.close()

    def __repr__(self) -> str:
        return f"FaultyStore({self.inner!r})"
