"""Rate-limited reporting of faults: each is counted always, logged once a minute.

Faults of Stigg, the network, a store or the policy file can repeat thousands
of times a second during an incident; the log must stay readable and cheap.
Records carry a stable ``event`` name and structured ``extra`` fields.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter

from stigg_cache import _fork
from stigg_cache._clock import Clock

LOG_INTERVAL_S = 60.0  # Stigg's own guidance: log fallbacks at most once a minute
MAX_REMEMBERED = 10_000  # (event, key) pairs whose last line is remembered: ids are unbounded
MAX_SHOWN_CHARS = 120  # of a key in a message (ids may be 1,000 characters)
logger = logging.getLogger("stigg_cache")


class FaultLog:
    """Counts every fault and logs each (event, key) at most once per interval."""

    def __init__(self, clock: Clock, interval_s: float = LOG_INTERVAL_S) -> None:
        self._clock = clock
        self._interval_s = interval_s
        self._last: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        _fork.renew_after_fork(self, _fork.fresh_lock)

    def report(
        self, event: str, message: str, *, key: str = "", level: int = logging.WARNING
    ) -> bool:
        """Count ``event``; log ``message`` unless logged for ``key`` within the interval."""
        now = self._clock.monotonic()
        with self._lock:
            self.counts[event] += 1
            last = self._last.get((event, key))
            if last is not None and now - last < self._interval_s:
                return False
            self._last.pop((event, key), None)  # re-inserted last: the dict stays oldest first
            self._last[(event, key)] = now
            if len(self._last) > MAX_REMEMBERED:
                self._forget()
            suppressed = self.counts[event]
        logger.log(
            level,
            "%s: %s",
            event,
            message,
            extra={"event": event, "event_key": shown(key), "event_count": suppressed},
        )
        return True

    def _forget(self) -> None:
        """Drop the oldest half of what is remembered (the table stays bounded)."""
        for stale in list(self._last)[: len(self._last) // 2]:
            del self._last[stale]


def shown(text: str) -> str:
    """An id as it may appear in a log line: at most ``MAX_SHOWN_CHARS``, marked if cut."""
    if len(text) <= MAX_SHOWN_CHARS:
        return text
    return f"{text[:MAX_SHOWN_CHARS]}...({len(text):,} chars)"
