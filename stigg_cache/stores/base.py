"""The store protocol: bytes in, bytes out, atomic replace.

Failure rules, for every implementation:

* ``get`` returns :data:`MISSING` for an absent key; any I/O fault raises
  :class:`~stigg_cache.errors.StoreError`. Callers (the client) turn faults
  into misses and report them: a store never takes a check down.
* ``put`` replaces the whole value atomically: a concurrent reader sees the
  old value or the new one, never a mix.
* Values are opaque bytes; integrity (checksum, signature) is the codec's job.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Iterator, Sequence
from typing import Final, Literal, Protocol, runtime_checkable


class _Missing(enum.Enum):
    MISSING = "MISSING"

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing.MISSING
"""Sentinel for "no value under this key", distinct from any stored bytes."""
Missing = Literal[_Missing.MISSING]


@runtime_checkable
class Store(Protocol):
    """A key-value store for snapshots, shared by threads (and processes, if durable)."""

    def get(self, key: str) -> bytes | Missing:
        """The value under ``key``, or :data:`MISSING`."""
        ...

    def put(self, key: str, value: bytes) -> None:
        """Store ``value`` under ``key``, replacing any old value atomically."""
        ...

    def delete(self, key: str) -> None:
        """Remove ``key``; absent keys are not an error."""
        ...

    def keys(self, prefix: str = "") -> Iterator[str]:
        """Every key starting with ``prefix``, in no particular order."""
        ...

    def close(self) -> None:
        """Release connections and handles; the store is unusable afterwards."""
        ...


@runtime_checkable
class Leases(Protocol):
    """A store several processes share lets one of them refresh a customer at a time.

    A lease is a hint, not a lock: it runs out by itself, so a holder that dies
    costs the others ``ttl_s`` at most. Faults follow :class:`Store`'s rules
    (``StoreError``); a caller that cannot get an answer fetches anyway.
    """

    def lease(self, key: str, owner: str, ttl_s: float) -> bool:
        """Hold ``key`` for ``ttl_s`` seconds unless another owner holds it unexpired.

        True when ``owner`` holds it now (taken, or renewed by its holder);
        ``ttl_s=0`` gives back a lease its owner holds.
        """
        ...


@runtime_checkable
class Pruning(Protocol):
    """A durable store drops what no check can use any more (bounded work per call).

    Snapshots older than the policy's longest ``max_staleness`` only answer
    DEFAULT; a customer never seen again would hold its snapshot forever.
    """

    def keep_for(self, prefix: str, seconds: float, max_bytes: int | None) -> None:
        """Entries under ``prefix`` are of use ``seconds`` after their write; with
        ``max_bytes``, the store keeps at most about that much, the least recently
        used (written, or read as :meth:`touch` says) going first. Refresh leases
        (:class:`Leases`) never count against it: bookkeeping never evicts a snapshot.
        Applies to what is written from now on, and to pruning."""
        ...

    def prune(self, limit: int) -> int:
        """Drop up to ``limit`` entries past their time or beyond the byte bound, and refresh
        leases that ran out (stores that expire entries by themselves do nothing); how many
        entries went."""
        ...

    def touch(self, keys: Sequence[str]) -> None:
        """These entries were read lately: beyond the byte bound, the least recently read
        go first (a store whose own eviction tracks reads, or that cannot, does nothing)."""
        ...


def lease_of(store: Store, key: str, owner: str, ttl_s: float) -> bool:
    """``store``'s lease (:class:`Leases`); a store without leases: always taken."""
    return not isinstance(store, Leases) or store.lease(key, owner, ttl_s)


@runtime_checkable
class Fencing(Protocol):
    """Invalidation fences off the writes of reads that began before it, in every process.

    Each key has a generation (0 until it is first fenced). ``fence`` removes
    the key's value and moves its generation on; ``put_if_generation`` writes
    only while the generation is still the one given, atomically with that
    check. A fetch notes the generation before it asks Stigg: what it brings
    back after an invalidation (Stigg's answer from before a grant) is never
    stored. Faults follow :class:`Store`'s rules.
    """

    def generation(self, key: str) -> int:
        """The key's generation now."""
        ...

    def fence(self, key: str) -> None:
        """Remove the key's value and move its generation on."""
        ...

    def put_if_generation(self, key: str, value: bytes, generation: int) -> bool:
        """Store ``value`` under ``key`` if its generation is still ``generation``; whether
        it was stored."""
        ...


FENCE_PREFIX = "fence:"  # a store without Fencing keeps generations under these keys
FENCE_KEEP_S = 3600.0  # a fence outlives any fetch it fences (seconds): then it may go


def next_generation(current: int) -> int:
    """A generation after ``current``: the time in microseconds (never reused after a fence
    is forgotten), or one more if that is not later."""
    return max(time.time_ns() // 1000, current + 1)


def generation_of(store: Store, key: str) -> int:
    """``store``'s generation of ``key`` (:class:`Fencing`, or kept beside it)."""
    if isinstance(store, Fencing):
        return store.generation(key)
    kept = store.get(FENCE_PREFIX + key)
    return 0 if kept is MISSING else int(kept)


def fence_of(store: Store, key: str) -> None:
    """Fence ``key`` in ``store`` (in two steps for a store without :class:`Fencing`)."""
    if isinstance(store, Fencing):
        store.fence(key)
        return
    store.put(FENCE_PREFIX + key, str(next_generation(generation_of(store, key))).encode())
    store.delete(key)


def put_fenced(store: Store, key: str, value: bytes, generation: int) -> bool:
    """Store ``value`` unless ``key`` was fenced since ``generation`` (atomically where the
    store is :class:`Fencing`; else a fence in between the look and the write is missed)."""
    if isinstance(store, Fencing):
        return store.put_if_generation(key, value, generation)
    if generation_of(store, key) != generation:
        return False
    store.put(key, value)
    return True


@runtime_checkable
class Counting(Protocol):
    """A store that counts its keys under a prefix without walking them.

    A store shared by a fleet can hold millions of keys beside other applications'
    (Redis): every process walking them all once a minute to count its snapshots
    would keep the server busy. Faults follow :class:`Store`'s rules.
    """

    def count(self, prefix: str) -> int:
        """How many keys start with ``prefix`` (live ones; may lag an expiry by seconds)."""
        ...


def count_keys(store: Store, prefix: str) -> int:
    """Keys under ``prefix``: counted by the store if it can, else walked."""
    if isinstance(store, Counting):
        return store.count(prefix)
    return sum(1 for _ in store.keys(prefix))
