"""An in-process store: fast, shared by threads, gone with the process."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

from stigg_cache._support import fork
from stigg_cache.stores.base import MISSING, Missing


class MemoryStore:
    """A dict behind a lock."""

    def __init__(self) -> None:
        self._values: dict[str, bytes] = {}
        self._leases: dict[str, tuple[str, float]] = {}  # key -> owner, until (monotonic)
        self._lock = threading.Lock()
        fork.renew_after_fork(self, fork.fresh_lock)

    def get(self, key: str) -> bytes | Missing:
        return self._values.get(key, MISSING)

    def put(self, key: str, value: bytes) -> None:
        with self._lock:
            self._values[key] = bytes(value)

    def lease(self, key: str, owner: str, ttl_s: float) -> bool:
        now = time.monotonic()
        with self._lock:
            holder = self._leases.get(key)
            if holder is not None and holder[0] != owner and holder[1] > now:
                return False
            self._leases[key] = (owner, now + ttl_s)
            return True

    def delete(self, key: str) -> None:
        with self._lock:
            self._values.pop(key, None)

    def keys(self, prefix: str = "") -> Iterator[str]:
        with self._lock:
            found = [k for k in self._values if k.startswith(prefix)]
        return iter(found)

    def close(self) -> None:
        with self._lock:
            self._values.clear()

    def __repr__(self) -> str:
        return "MemoryStore()"


def open_memory_store(url: str, *, read_only: bool = False) -> MemoryStore:
    """Entry point for ``memory://`` (read-only or not, a new store is empty)."""
    del url, read_only
    return MemoryStore()
