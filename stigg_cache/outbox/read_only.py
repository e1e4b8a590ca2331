"""An outbox as tools that only look get it: reads pass through, every write raises.

:func:`~stigg_cache.outbox.open_outbox` with ``read_only=True`` asks the plugin to
open without creating anything, then wraps what it opened in :class:`ReadOnlyOutbox`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from stigg_cache.errors import InvalidTypeError, StoreError
from stigg_cache.outbox.base import Claimed, DeadLetter, DeadLetterBox, Outbox, OutboxStats
from stigg_cache.outbox.records import Receipt, RecordKind, UsageRecord


class ReadOnlyOutbox:
    """The :class:`Outbox` and :class:`DeadLetterBox` protocols over another outbox,
    its writes refused (:class:`~stigg_cache.errors.StoreError`)."""

    def __init__(self, inner: Outbox) -> None:
        self._inner = inner

    def stats(self, now: float) -> OutboxStats:
        return self._inner.stats(now)

    def unsettled(self) -> list[tuple[UsageRecord, float | None]]:
        return self._inner.unsettled()

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        if not isinstance(self._inner, DeadLetterBox):
            raise InvalidTypeError(f"{self._inner!r} does not manage dead letters")
        return self._inner.dead_letters(limit)

    def enqueue(self, records: Sequence[UsageRecord], now: float) -> list[Receipt]:
        del records, now
        raise self._refused()

    def claim(
        self, kind: RecordKind, limit: int, owner: str, *, now: float, lease_s: float
    ) -> list[Claimed]:
        del kind, limit, owner, now, lease_s
        raise self._refused()

    def settle(
        self,
        *,
        sent: Sequence[int] = (),
        retry: Sequence[int] = (),
        dead: Sequence[int] = (),
        owner: str,
        now: float,
        retry_at: float = 0.0,
        reason: str = "",
        counted: Mapping[int, float] | None = None,
    ) -> None:
        del sent, retry, dead, owner, now, retry_at, reason, counted
        raise self._refused()

    def release(self, owner: str) -> int:
        del owner
        raise self._refused()

    def requeue(self, ids: Sequence[int] | None = None) -> int:
        del ids
        raise self._refused()

    def purge(self, ids: Sequence[int] | None = None) -> int:
        del ids
        raise self._refused()

    def close(self) -> None:
        self._inner.close()

    def _refused(self) -> StoreError:
        return StoreError(f"{self!r} was opened read-only: nothing is written")

    def __repr__(self) -> str:
        return f"ReadOnlyOutbox({self._inner!r})"
