"""Rate-limited reporting of faults: each is counted always, each kind logged once a minute.

Faults of Stigg, the network, a store or the policy file can repeat thousands
of times a second during an incident, and under as many keys (500 unknown
feature ids were 500 WARNING lines): the log must stay readable and cheap. So
a kind of fault (an ``event``) is logged once per interval whatever its keys,
and each line says how many times, under how many distinct keys, it happened
since the kind's last line. Records carry a stable ``event`` name and
structured ``extra`` fields.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter

import attrs

from stigg_cache._support import fork
from stigg_cache._support.clock import Clock

LOG_INTERVAL_S = 60.0  # Stigg's own guidance: log fallbacks at most once a minute
MAX_REMEMBERED = 10_000  # distinct keys counted per kind between two lines: ids are unbounded
MAX_SHOWN_CHARS = 120  # of a key in a message (ids may be 1,000 characters)
logger = logging.getLogger("stigg_cache")


@attrs.define
class _Since:
    """A kind of fault since its last line: when that was, and what happened since."""

    logged_at: float
    occurrences: int = 0
    keys: set[int] = attrs.field(factory=set)  # hashes: a key may be 1,000 characters


class FaultLog:
    """Counts every fault and logs each kind (``event``) at most once per interval."""

    def __init__(self, clock: Clock, interval_s: float = LOG_INTERVAL_S) -> None:
        self._clock = clock
        self._interval_s = interval_s
        self._kinds: dict[str, _Since] = {}  # event names are the code's: a bounded set
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        fork.renew_after_fork(self, fork.fresh_lock)

    def report(
        self, event: str, message: str, *, key: str = "", level: int = logging.WARNING
    ) -> bool:
        """Count ``event`` (under ``key``); log ``message`` unless ``event`` was logged
        within the interval. Returns whether it was."""
        now = self._clock.monotonic()
        with self._lock:
            self.counts[event] += 1
            since = self._kinds.get(event)
            if since is not None and now - since.logged_at < self._interval_s:
                since.occurrences += 1
                if len(since.keys) < MAX_REMEMBERED:
                    since.keys.add(hash(key))
                return False
            self._kinds[event] = _Since(now)
            total = self.counts[event]
        occurrences, keys = 1, 1
        if since is not None and since.occurrences:
            occurrences = since.occurrences + 1
            keys = min(MAX_REMEMBERED, len(since.keys | {hash(key)}))
            more = "+" if len(since.keys) >= MAX_REMEMBERED else ""  # at least that many
            message += (
                f" ({occurrences:,} times, {keys:,}{more} distinct, "
                f"in the {now - since.logged_at:.0f}s since the last line)"
            )
        logger.log(
            level,
            "%s: %s",
            event,
            message,
            extra={
                "event": event,
                "event_key": shown(key),
                "event_count": total,
                "event_occurrences": occurrences,
                "event_keys": keys,
            },
        )
        return True


def shown(text: str) -> str:
    """An id as it may appear in a log line: at most ``MAX_SHOWN_CHARS``, marked if cut."""
    if len(text) <= MAX_SHOWN_CHARS:
        return text
    return f"{text[:MAX_SHOWN_CHARS]}...({len(text):,} chars)"
