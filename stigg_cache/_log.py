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
            self._last[(event, key)] = now
            suppressed = self.counts[event]
        logger.log(
            level,
            "%s: %s",
            event,
            message,
            extra={"event": event, "event_key": key, "event_count": suppressed},
        )
        return True
