"""L1: decoded snapshots held in memory, bounded by count and by bytes.

Eviction is CLOCK (oldest first; one asked for since the last pass goes to the back),
admission TinyLFU (:mod:`stigg_cache.core.admission`: a newcomer displaces an entry
only if asked for more often lately). L1 also counts this process's invalidations of
each scope, so that a fetch or a read begun before one never lands afterwards
(``LocalFence``). It does no I/O: reads take no lock; changes take one.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import TypeAlias

from stigg_cache._support import fork
from stigg_cache.core.admission import FrequencySketch
from stigg_cache.core.terms import CachedSnapshot, ScopeKey
from stigg_cache.models import Snapshot

SWEEP = 64  # entries L1's eviction sweep passes over (asked for lately) before it evicts
MAX_FENCED = 10_000  # scopes whose invalidations this process counts; all forgotten beyond


# This process's invalidations of a scope, as noted before a fetch or a store read: what
# is brought back is held only if they are still the same. ``(epoch, invalidations)``:
# the epoch moves on when the counts are forgotten (no earlier fence matches then), the
# invalidations are the scope's within the epoch. A plain tuple: a first check from the
# store notes one and compares it, so it costs what a tuple costs.
LocalFence: TypeAlias = tuple[int, int]


class L1:
    """Decoded snapshots by scope, within ``max_entries`` and ``max_bytes`` (the
    ``held_bytes`` of each entry, set by whoever made it).

    ``on_held(scope)`` is called (outside the lock) when a scope enters L1.
    """

    def __init__(
        self, max_entries: int, max_bytes: int, on_held: Callable[[ScopeKey], None]
    ) -> None:
        self.entries: OrderedDict[ScopeKey, CachedSnapshot] = OrderedDict()
        """Read without a lock (OrderedDict calls are atomic under the GIL)."""
        self.held_bytes = 0
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._on_held = on_held
        self._sketch = FrequencySketch(max_entries)  # how often each scope missed L1 lately
        self._lock = threading.Lock()
        self._invalidated: dict[ScopeKey, int] = {}  # invalidations here, by scope
        self._epoch = 0
        fork.renew_after_fork(self, fork.fresh_lock)

    def peek(self, scope: ScopeKey) -> CachedSnapshot | None:
        """The snapshot held for a scope, marked recently used."""
        entry = self.entries.get(scope)
        if entry is not None:
            entry.referenced = True  # the eviction sweep passes it over once
        return entry

    def missed(self, scope: ScopeKey) -> None:
        """A scope was asked for and not held (hits are credited by the eviction sweep)."""
        self._sketch.add(scope)

    def fence(self, scope: ScopeKey) -> LocalFence:
        return (self._epoch, self._invalidated.get(scope, 0))

    def remember(
        self, scope: ScopeKey, entry: CachedSnapshot, fence: LocalFence | None = None
    ) -> None:
        """Hold ``entry`` if it replaces the scope's, fits, or wins admission against the
        entry the sweep would evict (asked for more often lately: TinyLFU); never if the
        scope was invalidated here since ``fence`` (noted before it was read)."""
        with self._lock:
            if fence is not None and fence != self.fence(scope):
                return
            replaced = self.entries.get(scope)
            # A newcomer is the sweep's first candidate until asked for again (a scan's
            # customers go before the ones in use); a refreshed entry keeps its standing.
            entry.referenced = replaced is not None and replaced.referenced
            if replaced is None and self._full(entry.held_bytes):
                victim = self._victim()
                if victim is not None and not self._sketch.admits(scope, victim):
                    return  # turned away: answered from L2 until asked for more often
            if replaced is not None:
                self.held_bytes -= replaced.held_bytes
            self.entries[scope] = entry
            self.held_bytes += entry.held_bytes
            self._evict(keep=scope)
        if replaced is None:
            self._on_held(scope)

    def grew(self, scope: ScopeKey, entry: CachedSnapshot, added: int) -> None:
        """``entry`` holds ``added`` bytes more (the fast path prepared an answer on it)."""
        with self._lock:
            if self.entries.get(scope) is entry:
                entry.held_bytes += added
                self.held_bytes += added
                self._evict(keep=scope)

    def let_go(self, scope: ScopeKey, snapshot: Snapshot) -> None:
        """Drop ``snapshot`` if it is still the one held for ``scope``."""
        with self._lock:
            held = self.entries.get(scope)
            if held is not None and held.snapshot is snapshot:
                del self.entries[scope]
                self.held_bytes -= held.held_bytes

    def invalidate(self, scope: ScopeKey) -> None:
        """Drop a scope and count its invalidation: no earlier fence of it matches."""
        with self._lock:
            if len(self._invalidated) >= MAX_FENCED:
                self._invalidated.clear()
                self._epoch += 1
            self._invalidated[scope] = self._invalidated.get(scope, 0) + 1
            dropped = self.entries.pop(scope, None)
            if dropped is not None:
                self.held_bytes -= dropped.held_bytes

    def clear(self) -> None:
        with self._lock:
            self.entries.clear()
            self.held_bytes = 0

    def referenced(self) -> list[ScopeKey]:
        """The scopes asked for since they entered or the sweep last passed them."""
        return [scope for scope, entry in list(self.entries.items()) if entry.referenced]

    def _full(self, adding: int) -> bool:
        return len(self.entries) >= self._max_entries or self.held_bytes + adding > self._max_bytes

    def _victim(self) -> ScopeKey | None:
        """The entry to evict next (CLOCK: oldest first; one asked for since the last pass
        goes to the back instead, credited in the sketch, at most ``SWEEP`` of them per
        look). Under the lock."""
        for _ in range(SWEEP):
            scope = next(iter(self.entries), None)
            if scope is None:
                return None
            entry = self.entries[scope]
            if not entry.referenced:
                return scope
            entry.referenced = False
            self._sketch.add(scope)  # hits count here, once per pass: a hit stays a lookup
            self.entries.move_to_end(scope)
        return next(iter(self.entries), None)

    def _evict(self, *, keep: ScopeKey) -> None:
        """Evict until within the budget, by count and by bytes; ``keep`` stays."""
        while len(self.entries) > 1 and (
            len(self.entries) > self._max_entries or self.held_bytes > self._max_bytes
        ):
            victim = self._victim()
            assert victim is not None  # more than one entry
            if victim == keep:
                self.entries.move_to_end(victim)
                victim = next(iter(self.entries))
            self.held_bytes -= self.entries.pop(victim).held_bytes
