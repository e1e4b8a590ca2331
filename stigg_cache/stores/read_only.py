"""A store as tools that only look get it: reads pass through, every write raises.

:func:`~stigg_cache.stores.open_store` with ``read_only=True`` asks the plugin to
open without creating anything, then wraps what it opened in :class:`ReadOnlyStore`,
so a read-only handle refuses writes whatever the plugin would do with them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from stigg_cache.errors import StoreError
from stigg_cache.stores.base import Missing


class Readable(Protocol):
    """What a store opened read-only must do: read, and close (any store does)."""

    def get(self, key: str) -> bytes | Missing: ...

    def keys(self, prefix: str = "") -> Iterator[str]: ...

    def close(self) -> None: ...


class ReadOnlyStore:
    """The :class:`~stigg_cache.stores.base.Store` protocol over a readable store, its
    writes refused."""

    def __init__(self, inner: Readable) -> None:
        self._inner = inner

    def get(self, key: str) -> bytes | Missing:
        return self._inner.get(key)

    def keys(self, prefix: str = "") -> Iterator[str]:
        return self._inner.keys(prefix)

    def put(self, key: str, value: bytes) -> None:
        """Raises StoreError: opened read-only."""
        del key, value
        raise StoreError(f"{self!r} was opened read-only: nothing is written")

    def delete(self, key: str) -> None:
        """Raises StoreError: opened read-only."""
        del key
        raise StoreError(f"{self!r} was opened read-only: nothing is deleted")

    def close(self) -> None:
        self._inner.close()

    def __repr__(self) -> str:
        return f"ReadOnlyStore({self._inner!r})"
