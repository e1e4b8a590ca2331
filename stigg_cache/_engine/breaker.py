"""Health of the link to Stigg: the breaker, the last error, status listeners.

A refused API key (401/403) is configuration, not Stigg's health: it never
trips the breaker on its own, but it is never silent either (DESIGN §11):
while it lasts the state is DEGRADED with ``auth_error`` saying why, and it is
logged at ERROR once a minute and counted (``stigg_cache.auth_refused``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from stigg_cache._support import fork
from stigg_cache._support.clock import Clock
from stigg_cache._support.log import FaultLog, logger
from stigg_cache.core.breaker import BreakerState, CircuitBreaker
from stigg_cache.errors import FailureKind, StiggUnavailableError
from stigg_cache.models import ConnectionState

StateListener = Callable[[ConnectionState, ConnectionState], None]


class Health:
    """Thread-safe owner of the breaker; tells listeners when the state changes."""

    def __init__(
        self, breaker: CircuitBreaker, clock: Clock, faults: FaultLog | None = None
    ) -> None:
        self._breaker = breaker
        self._clock = clock
        self._faults = faults or FaultLog(clock)
        self._lock = threading.Lock()
        self._listeners: list[StateListener] = []
        self.state = ConnectionState.CONNECTED
        self.since = clock.time()
        self.last_error: str | None = None
        self.store_error: str | None = None
        self.auth_error: str | None = None  # Stigg refuses our key (401/403) since this
        # Answers Stigg has given so far. A call remembers this when it starts: if
        # Stigg answered meanwhile, the call's late failure (a request released
        # from a blackhole after Stigg came back) is old news, not a new outage.
        self.answers = 0
        fork.renew_after_fork(self, Health._renew)

    def _renew(self) -> None:
        """In a forked child: a lock of its own, and no probe left to a parent's request.

        A half-open probe in flight at the fork is answered in the parent only;
        waiting for it here would keep the breaker from ever closing.
        """
        self._lock = threading.Lock()
        self._breaker.forget_probe(self._clock.monotonic())

    def allow(self) -> bool:
        """Whether a request to Stigg may start now (may claim the half-open probe)."""
        with self._lock:
            allowed = self._breaker.allow(self._clock.monotonic())
        self._publish()
        return allowed

    def probe_in(self) -> float | None:
        """Seconds until a request may tell whether Stigg answers again (0: now); ``None``
        while nothing has failed. A process with nothing of its own to ask Stigg asks
        then all the same (the flusher's idle probe): else it would stay OFFLINE or
        DEGRADED, and never reconcile, while Stigg is fine."""
        with self._lock:
            return self._breaker.probe_in(self._clock.monotonic())

    def succeeded(self) -> None:
        """Stigg answered."""
        with self._lock:
            self._breaker.record_success()
            self.answers += 1
            self.auth_error = None
        self._publish()

    def failed(
        self, error: StiggUnavailableError | TimeoutError, *, begun: int | None = None
    ) -> None:
        """A call failed or ran past its deadline.

        ``begun`` is :attr:`answers` when the call started; the failure is
        ignored if Stigg has answered since.
        """
        refused = isinstance(error, StiggUnavailableError) and error.kind is FailureKind.AUTH
        with self._lock:
            if begun is not None and begun != self.answers:
                return
            self.last_error = str(error) or type(error).__name__
            if refused:
                self.auth_error = self.last_error
            if (
                not isinstance(error, StiggUnavailableError)
                or error.trips_breaker
                or self._breaker.state is BreakerState.HALF_OPEN  # a refused probe: no verdict
            ):  # on Stigg's health, so probe again after the backoff rather than wait forever
                self._breaker.record_failure(self._clock.monotonic())
        if refused:
            self._faults.report(
                "stigg_cache.auth_refused",
                f"{self.last_error}; checks answer from cache and policy, usage is kept and "
                "sent once Stigg accepts the key (check api_key and base_url)",
                level=logging.ERROR,
            )
        self._publish()

    def store_fault(self, message: str | None) -> None:
        """A store failed (message) or worked again (``None``)."""
        with self._lock:
            self.store_error = message
        self._publish()

    @property
    def breaker_state(self) -> BreakerState:
        """The breaker's current state."""
        return self._breaker.state

    @property
    def offline(self) -> bool:
        """True while the breaker keeps requests from starting.

        Once its backoff has passed this is False, so the next stale answer
        starts the refresh that probes Stigg: a service whose customers all
        hold stale snapshots must still find out that Stigg is back.
        """
        breaker = self._breaker
        return breaker.state is BreakerState.OPEN and self._clock.monotonic() < breaker.retry_at

    def subscribe(self, listener: StateListener) -> Callable[[], None]:
        """Call ``listener(old, new)`` on every state change; returns an unsubscribe."""
        with self._lock:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return unsubscribe

    def _derive(self) -> ConnectionState:
        breaker = self._breaker
        if breaker.state is BreakerState.OPEN:
            return ConnectionState.OFFLINE
        # The state is the link to Stigg: a failing store shows as store_healthy, never here.
        if (
            breaker.state is BreakerState.HALF_OPEN
            or breaker.consecutive_failures
            or self.auth_error is not None  # our key is refused: nothing is answered live
        ):
            return ConnectionState.DEGRADED
        return ConnectionState.CONNECTED

    def _publish(self) -> None:
        with self._lock:
            new = self._derive()
            old = self.state
            if new is old:
                return
            self.state = new
            self.since = self._clock.time()
            listeners = list(self._listeners)
        logger.log(
            logging.WARNING if new is not ConnectionState.CONNECTED else logging.INFO,
            "stigg_cache.status_changed: %s -> %s",
            old.value,
            new.value,
            extra={"event": "stigg_cache.status_changed", "old": old.value, "new": new.value},
        )
        for listener in listeners:
            try:
                listener(old, new)
            except Exception:
                logger.exception(
                    "stigg_cache.listener_failed", extra={"event": "stigg_cache.listener_failed"}
                )
