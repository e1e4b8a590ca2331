"""Which snapshot L1 keeps when it is full: TinyLFU's frequency-aware admission.

Plain LRU lets any scan flush the hot set: a pass over a few more customers
than fit leaves a 0 % hit rate on every pass. TinyLFU (as Caffeine uses it)
admits a newcomer only if it was asked for more often lately than the entry
it would evict. Frequencies live in a count-min sketch: four rows of small
counters (at most 15), 32 bytes per entry L1 can hold, halved every
``10 x capacity`` increments so old popularity fades.

A hit must stay a dictionary lookup, so it only marks its entry (CLOCK's
reference bit); L1's eviction sweep credits a marked entry here once per pass,
and every miss counts. A customer asked for again and again gains weight; a
scan's customers, each asked once, never outweigh those in use.
"""

from __future__ import annotations

from collections.abc import Hashable

MAX_COUNT = 15  # 4-bit counters, as Caffeine's
ROWS = 4
SAMPLE_PER_ENTRY = 10  # increments per entry of capacity between two halvings
# Counters per row for each entry of capacity: the keys counted between two halvings
# (up to SAMPLE_PER_ENTRY per entry) collide rarely enough that a scan's keys, each
# counted once, seldom pass for popular. 4 MB for L1's default 100,000 entries.
CELLS_PER_ENTRY = 8
_HALF = bytes(count >> 1 for count in range(256))
_MIX = 0x9E3779B97F4A7C15  # Fibonacci hashing: spreads the hash's bits for the second index


class FrequencySketch:
    """How often each key was counted lately (never less than the truth; rarely more)."""

    def __init__(self, capacity: int) -> None:
        width = 64
        while width < CELLS_PER_ENTRY * capacity:
            width *= 2
        self._mask = width - 1
        self._rows = [bytearray(width) for _ in range(ROWS)]
        self._sample = SAMPLE_PER_ENTRY * max(capacity, 1)
        self._added = 0

    def _cells(self, key: Hashable) -> tuple[int, int, int, int]:
        """A cell per row, by double hashing of one hash (the second half mixed in)."""
        first = hash(key)
        second = ((first * _MIX) >> 32) | 1
        mask = self._mask
        return (
            first & mask,
            (first + second) & mask,
            (first + 2 * second) & mask,
            (first + 3 * second) & mask,
        )

    def add(self, key: Hashable) -> None:
        """Count one request for ``key``; every so often, halve every count (ageing)."""
        a, b, c, d = self._cells(key)
        r0, r1, r2, r3 = self._rows
        if r0[a] < MAX_COUNT:
            r0[a] += 1
        if r1[b] < MAX_COUNT:
            r1[b] += 1
        if r2[c] < MAX_COUNT:
            r2[c] += 1
        if r3[d] < MAX_COUNT:
            r3[d] += 1
        self._added += 1
        if self._added >= self._sample:
            self._rows = [row.translate(_HALF) for row in self._rows]
            self._added //= 2

    def frequency(self, key: Hashable) -> int:
        """The estimated count of ``key``: the least of its cells."""
        return min(row[cell] for row, cell in zip(self._rows, self._cells(key), strict=True))

    def admits(self, candidate: Hashable, victim: Hashable) -> bool:
        """Whether ``candidate`` should take the place of ``victim`` (asked for more often)."""
        return self.frequency(candidate) > self.frequency(victim)
