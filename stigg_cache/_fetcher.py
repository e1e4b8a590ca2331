"""Single-flight fetches from Stigg under the check deadline.

A check waits for a fetch at most until its deadline; the fetch itself runs
on a worker thread and, if it completes later, still lands in the cache for
the next check. Concurrent misses for one customer+resource share one flight.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future

import attrs

from stigg_cache import _fork
from stigg_cache._clock import Clock
from stigg_cache._health import Health
from stigg_cache._memory_only import refuse_io
from stigg_cache.adapters.base import Adapter, as_failure
from stigg_cache.errors import FailureKind, StiggUnavailableError
from stigg_cache.stores.layered import CachedSnapshot, ScopeKey, SnapshotCache

DEFAULT_FETCH_CONCURRENCY = 8


@attrs.define(eq=False)
class _Flight:
    future: Future[CachedSnapshot]
    begun: int  # Health.answers when it started
    started: float  # time.monotonic(): waits on a Future run on real time, whatever the clock
    deadline_reported: bool = False


class Fetcher:
    """Runs adapter fetches on a bounded pool, one flight per scope."""

    def __init__(
        self,
        adapter: Adapter,
        cache: SnapshotCache,
        health: Health,
        clock: Clock,
        *,
        check_timeout_s: float,
        fetch_timeout_s: float,
        concurrency: int = DEFAULT_FETCH_CONCURRENCY,
    ) -> None:
        self._adapter = adapter
        self._cache = cache
        self._health = health
        self._clock = clock
        self._check_timeout_s = check_timeout_s
        self._fetch_timeout_s = fetch_timeout_s
        # Daemon threads, not an executor: a fetch stuck on a blackholed
        # socket must never hold up the application's exit.
        self._concurrency = concurrency
        self._slots = threading.BoundedSemaphore(concurrency)
        self._closed = False
        self._flights: dict[ScopeKey, _Flight] = {}
        self._lock = threading.Lock()
        _fork.renew_after_fork(self, Fetcher._renew)

    def _renew(self) -> None:
        """In a forked child no flight of the parent will land: forget them and their slots.

        A flight inherited from the parent would strand its customer (every
        check joining a fetch that never ends) for as long as the process lives.
        """
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(self._concurrency)
        self._flights = {}

    def fetch(self, scope: ScopeKey, wait_s: float) -> CachedSnapshot | StiggUnavailableError:
        """Join or start the flight for ``scope`` and wait up to ``wait_s`` for it.

        A flight that has not answered is Stigg's failure only once it has had a
        whole check's budget: a check whose time went elsewhere (a busy store)
        gives up without blaming Stigg.
        """
        refuse_io()
        wait_s = max(wait_s, 0.0)
        flight = self._flight(scope)
        if isinstance(flight, StiggUnavailableError):
            return flight
        try:
            return flight.future.result(timeout=wait_s)
        except TimeoutError:
            pass
        except StiggUnavailableError as failure:
            return failure
        if time.monotonic() - flight.started < self._check_timeout_s:
            return StiggUnavailableError(
                FailureKind.TIMEOUT,
                f"no time left to wait for Stigg ({wait_s:.3g}s of the check budget remained)",
            )
        with self._lock:
            first = not flight.deadline_reported
            flight.deadline_reported = True
        error = StiggUnavailableError(
            FailureKind.TIMEOUT, f"Stigg did not answer within the {wait_s:.3g}s check budget"
        )
        if first:
            self._health.failed(error, begun=flight.begun)
        return error

    def refresh(self, scope: ScopeKey) -> None:
        """Start a flight for ``scope`` in the background, if none is under way."""
        self._flight(scope)

    def close(self) -> None:
        """Stop taking work; fetches under way end at their own timeout."""
        self._closed = True

    def _flight(self, scope: ScopeKey) -> _Flight | StiggUnavailableError:
        with self._lock:
            flight = self._flights.get(scope)
            if flight is not None:
                return flight
            if self._closed:
                return StiggUnavailableError(FailureKind.CONNECTION, "client closed")
            if not self._slots.acquire(blocking=False):
                return StiggUnavailableError(
                    FailureKind.TIMEOUT, "every fetch slot is busy with a slow Stigg"
                )
        if not self._health.allow():
            self._slots.release()
            return StiggUnavailableError(
                FailureKind.CONNECTION, f"circuit open after: {self._health.last_error}"
            )
        with self._lock:
            flight = self._flights.get(scope)
            if flight is not None:  # another thread started it meanwhile
                self._slots.release()
                return flight
            flight = _Flight(Future(), self._health.answers, time.monotonic())
            self._flights[scope] = flight
        threading.Thread(
            target=self._run, args=(scope, flight), daemon=True, name="stigg-cache-fetch"
        ).start()
        return flight

    def _run(self, scope: ScopeKey, flight: _Flight) -> None:
        customer_id, resource_id = scope
        try:
            snapshot = self._adapter.fetch_entitlements(
                customer_id, resource_id, timeout_s=self._fetch_timeout_s
            )
        except Exception as error:  # an adapter bug too: it must not strand waiters
            failure = as_failure(error)
            self._finish(scope)
            if not flight.deadline_reported:
                self._health.failed(failure, begun=flight.begun)
            flight.future.set_exception(failure)
            return
        fetched = attrs.evolve(snapshot, fetched_at=self._clock.time())
        entry, stored = self._cache.hold(fetched, self._clock.monotonic())
        self._finish(scope)  # later checks find it in L1
        self._health.succeeded()
        flight.future.set_result(entry)
        # The write to L2 holds no caller and no fetch slot: a busy store (another
        # process's long write) costs checks nothing and is never taken for a slow Stigg.
        self._cache.persist(fetched, stored)

    def _finish(self, scope: ScopeKey) -> None:
        with self._lock:
            self._flights.pop(scope, None)
        self._slots.release()
