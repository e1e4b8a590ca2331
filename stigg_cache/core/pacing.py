"""Pure pacing arithmetic: token buckets and retry backoff.

Time is an argument, so these are deterministic under test and shared
unchanged by the flusher, the fetcher's read budget and the buckets a fleet
shares through Redis (the Redis plugin's).
"""

from __future__ import annotations

import enum
import math
from typing import Protocol

import attrs

from stigg_cache.errors import FailureKind

EVENTS_PER_SECOND = 1_000.0  # Stigg's published raw-event ingestion rate per account
USAGE_CALLS_PER_MINUTE = 600.0  # Stigg's reportUsageBulk limit
EDGE_READS_PER_MINUTE = 6_000.0  # Stigg's edge read limit per API key (shared by all endpoints)
MAX_EVENTS_PER_BATCH = 1_000  # Stigg's batch limit for POST /api/v1/events
MAX_USAGE_PER_BATCH = 100  # Stigg's batch limit for POST /api/v2/usage
DEDUP_WINDOW_S = 7 * 86_400.0  # Stigg deduplicates idempotency keys for 7 days
BASE_RETRY_S = 0.5
MAX_RETRY_S = 60.0  # our own backoff's ceiling
MAX_RETRY_AFTER_S = 3600.0  # Stigg's Retry-After is honoured up to an hour (beyond: an hour)


class RateBucket(Protocol):
    """A token bucket one process owns, or one a fleet shares (through Redis, say).

    A shared bucket keeps its own clock; ``now`` (monotonic seconds) serves
    the local one. ``acquire`` is atomic: two senders never get the same tokens.
    """

    @property
    def rate(self) -> float:
        """Tokens added per second."""
        ...

    @property
    def capacity(self) -> float:
        """The most tokens the bucket holds (the burst)."""
        ...

    def available(self, now: float) -> float:
        """Tokens that could be taken now (negative while paused)."""
        ...

    def take(self, count: float, now: float) -> float:
        """Take ``count`` tokens, or take none and say how many seconds until they are there."""
        ...

    def acquire(self, most: int, least: int, now: float) -> int:
        """Take as many whole tokens as are there, up to ``most``; none if fewer than ``least``."""
        ...

    def refund(self, count: float, now: float) -> None:
        """Give back tokens acquired but not spent."""
        ...

    def pause(self, seconds: float, now: float) -> None:
        """Spend the bucket down so nothing is taken for ``seconds`` (a 429's Retry-After)."""
        ...


@attrs.define
class TokenBucket:
    """``rate`` tokens per second, holding at most ``capacity``.

    ``take(n, now)`` returns 0.0 when ``n`` tokens were taken, else the seconds
    to wait before they will be there (nothing is taken then).
    """

    rate: float
    capacity: float
    tokens: float = attrs.field(default=-1.0)
    updated: float | None = None

    def __attrs_post_init__(self) -> None:
        if self.tokens < 0:
            self.tokens = self.capacity

    def _refill(self, now: float) -> None:
        if self.updated is not None and now > self.updated:
            self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now if self.updated is None else max(self.updated, now)

    def take(self, count: float, now: float) -> float:
        """Take ``count`` tokens now, or say how long until they are there."""
        self._refill(now)
        if count <= self.tokens:
            self.tokens -= count
            return 0.0
        return (count - self.tokens) / self.rate

    def acquire(self, most: int, least: int, now: float) -> int:
        """Take as many whole tokens as are there, up to ``most``; none if fewer than ``least``."""
        self._refill(now)
        granted = min(most, math.floor(self.tokens))
        if granted < max(least, 1):
            return 0
        self.tokens -= granted
        return granted

    def refund(self, count: float, now: float) -> None:
        """Give back tokens acquired but not spent."""
        self._refill(now)
        self.tokens = min(self.capacity, self.tokens + count)

    def available(self, now: float) -> float:
        """Tokens that could be taken now."""
        self._refill(now)
        return self.tokens

    def pause(self, seconds: float, now: float) -> None:
        """Spend the bucket down so nothing is taken for ``seconds`` (a 429's Retry-After)."""
        self._refill(now)
        self.tokens = min(self.tokens, -seconds * self.rate)


def retry_delay(attempts: int, jitter: float, retry_after_s: float | None = None) -> float:
    """Seconds before the next try: Stigg's ``Retry-After`` if it gave one, else exponential.

    A ``Retry-After`` is honoured as given, never undercut and not compounded:
    a storm of 429s saying "2 s" must not grow into minutes of silence once
    Stigg is fine again. A tenth of jitter spreads a fleet that got the same hint.

    Args:
        attempts: failures so far (1 after the first failure).
        jitter: a number in [0, 1).
        retry_after_s: Stigg's own hint.
    """
    if retry_after_s is not None:
        return min(MAX_RETRY_AFTER_S, retry_after_s) * (1 + jitter / 10)
    ceiling = min(MAX_RETRY_S, BASE_RETRY_S * 2.0 ** max(attempts - 1, 0))
    return ceiling * (0.5 + jitter / 2)


class SendOutcome(enum.Enum):
    """What the flusher does with a batch Stigg did not accept.

    RETRY: keep it, back off, send again with the same keys and stamps.
    SPLIT: Stigg rejected a multi-record batch: halve it to find the bad record.
    DEAD: Stigg rejected this single record: dead-letter it with the reason.
    """

    RETRY = "retry"
    SPLIT = "split"
    DEAD = "dead"
    PAUSE = "pause"


# A 4xx that says a record is wrong: isolate it (None: a refusal without a status, e.g. a
# GraphQL validation error). Any other 4xx is about the request's destination or our key
# (401, 403, a 404 on the endpoint itself): every record would fail the same way.
BAD_RECORD_STATUSES = frozenset({400, 413, 422, None})


def plan_failure(kind: FailureKind, batch_size: int, status_code: int | None = None) -> SendOutcome:
    """Retry what may succeed later; isolate and dead-letter what Stigg refuses as wrong;
    keep everything and pause while our key or endpoint is refused (a configuration error:
    dead-lettering would drop every record over a rotated key)."""
    if kind is FailureKind.AUTH or (
        kind is FailureKind.REJECTED and status_code not in BAD_RECORD_STATUSES
    ):
        return SendOutcome.PAUSE
    if kind is not FailureKind.REJECTED:
        return SendOutcome.RETRY
    return SendOutcome.SPLIT if batch_size > 1 else SendOutcome.DEAD
