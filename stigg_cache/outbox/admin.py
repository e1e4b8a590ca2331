"""``client.outbox``: what an operator needs to see and do about buffered usage."""

from __future__ import annotations

from collections.abc import Sequence

from stigg_cache._support.clock import Clock
from stigg_cache.errors import InvalidTypeError
from stigg_cache.outbox.base import DeadLetter, DeadLetterBox, Outbox, OutboxStats


class OutboxAdmin:
    """``client.outbox``: depth, and the dead letters an operator acts on."""

    def __init__(self, outbox: Outbox, clock: Clock) -> None:
        self._outbox = outbox
        self._clock = clock

    def stats(self) -> OutboxStats:
        """Pending, leased, recently sent and dead-lettered counts."""
        return self._outbox.stats(self._clock.time())

    def count(self) -> int:
        """Records waiting to be sent."""
        return self.stats().pending

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """The oldest dead letters, with the reason each was set aside."""
        return self._box().dead_letters(limit)

    def requeue(self, ids: Sequence[int] | None = None) -> int:
        """Send dead letters again (all when ``ids`` is None)."""
        return self._box().requeue(ids)

    def purge(self, ids: Sequence[int] | None = None) -> int:
        """Delete dead letters for good (all when ``ids`` is None)."""
        return self._box().purge(ids)

    def _box(self) -> DeadLetterBox:
        if not isinstance(self._outbox, DeadLetterBox):
            raise InvalidTypeError(f"{type(self._outbox).__name__} does not manage dead letters")
        return self._outbox
