"""Circuit breaker: stop waiting on a Stigg that keeps failing.

States and transitions (time is passed in, so this is pure and testable):

* CLOSED: requests flow. ``failure_threshold`` consecutive failures -> OPEN.
* OPEN: no request is made until ``retry_at``; then the next ``allow`` call
  becomes the single half-open probe -> HALF_OPEN.
* HALF_OPEN: exactly one probe is in flight. Success -> CLOSED; failure ->
  OPEN again with the backoff doubled (capped), jittered so a fleet does not
  probe in lockstep. A probe nobody resolved within ``probe_timeout_s`` has
  expired: the next ``allow`` call becomes the probe in its place (a lost
  verdict must not keep the breaker from ever closing).

A success from any state closes the breaker: Stigg answered (to this process,
or to a sibling whose fresh snapshot answered this one's probe). ``probe_in``
says when a process with nothing of its own to ask Stigg should ask once all
the same: else, its usage sent by a sibling, it would never hear that verdict.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable

import attrs

DEFAULT_FAILURE_THRESHOLD = 3
DEFAULT_BASE_BACKOFF_S = 1.0
DEFAULT_MAX_BACKOFF_S = 30.0
# Longer than any request a probe can be (a fetch: 5 s, a usage send: 10 s by default).
DEFAULT_PROBE_TIMEOUT_S = 30.0


class BreakerState(enum.Enum):
    """The breaker's state; see the module docstring for transitions."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@attrs.define
class CircuitBreaker:
    """A consecutive-failure breaker with jittered exponential re-probing.

    Not thread-safe on its own: the owner holds a lock around calls.
    """

    failure_threshold: int = DEFAULT_FAILURE_THRESHOLD
    base_backoff_s: float = DEFAULT_BASE_BACKOFF_S
    max_backoff_s: float = DEFAULT_MAX_BACKOFF_S
    jitter: Callable[[], float] = random.random
    probe_timeout_s: float = DEFAULT_PROBE_TIMEOUT_S
    state: BreakerState = BreakerState.CLOSED
    consecutive_failures: int = 0
    trips: int = 0
    retry_at: float = 0.0
    probe_in_flight: bool = False
    probe_expires_at: float = 0.0

    def allow(self, now: float) -> bool:
        """Whether a request to Stigg may start now (claims the probe if one is due)."""
        if self.state is BreakerState.CLOSED:
            return True
        if now < self._due():
            return False
        self.state = BreakerState.HALF_OPEN
        self.probe_in_flight = True
        self.probe_expires_at = now + self.probe_timeout_s
        return True

    def probe_in(self, now: float) -> float | None:
        """Seconds until a process that would otherwise ask Stigg nothing should ask it
        once, to learn whether it answers again (0: now); ``None`` while nothing failed.

        Open, the backoff; half-open, the probe in flight's expiry; closed after
        failures below the threshold (degraded, requests still flow), a backoff
        from the last of them, grown with their count and jittered as the open one.
        """
        if self.state is BreakerState.CLOSED and not self.consecutive_failures:
            return None
        return max(0.0, self._due() - now)

    def _due(self) -> float:
        """When ``allow`` claims the probe: open, after the backoff; half-open, once the
        probe in flight has expired. (Closed after failures: ``probe_in``'s backoff.)"""
        return self.probe_expires_at if self.state is BreakerState.HALF_OPEN else self.retry_at

    def forget_probe(self, now: float) -> None:
        """The probe in flight will never report (its process forked): probe again from ``now``."""
        if self.state is BreakerState.HALF_OPEN:
            self.state = BreakerState.OPEN
            self.retry_at = now
            self.probe_in_flight = False

    def record_success(self) -> None:
        """Stigg answered: close."""
        self.state = BreakerState.CLOSED
        self.consecutive_failures = 0
        self.trips = 0
        self.probe_in_flight = False

    def record_failure(self, now: float) -> None:
        """A request failed or ran past the check deadline."""
        self.consecutive_failures += 1
        if self.state is BreakerState.HALF_OPEN or (
            self.state is BreakerState.CLOSED
            and self.consecutive_failures >= self.failure_threshold
        ):
            self._open(now)
        elif self.state is BreakerState.CLOSED:  # still closed: when probe_in asks again
            self.retry_at = now + self._backoff(self.consecutive_failures)

    def _open(self, now: float) -> None:
        self.trips += 1
        self.retry_at = now + self._backoff(self.trips)
        self.state = BreakerState.OPEN
        self.probe_in_flight = False

    def _backoff(self, times: int) -> float:
        """The wait after the ``times``-th trip (or failure): doubled each time, capped,
        jittered in [0.5, 1.0) of it (never later than the cap)."""
        backoff = min(self.max_backoff_s, self.base_backoff_s * 2.0 ** (times - 1))
        return backoff * (0.5 + self.jitter() / 2)
