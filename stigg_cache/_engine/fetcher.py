"""Single-flight fetches from Stigg under the check deadline, one per host.

A check waits for a fetch at most until its deadline; the fetch itself runs
on a worker thread and, if it completes later, still lands in the cache for
the next check. Concurrent misses for one customer+resource share one flight
in a process, and the processes sharing a store share one refresh: a flight
takes the store's refresh lease before it asks Stigg; a flight that finds the
lease held waits for the holder's snapshot to appear in the store (until the
lease is free again, or half its check's budget) instead of asking Stigg too.

Fetches a check waits for (live) and fetches nobody waits for (refreshing a
stale snapshot ahead, reconciliation) run on separate slots: however slow
Stigg is and however many customers went stale, a check that needs Stigg's
answer finds a slot to ask it.
"""

from __future__ import annotations

import math
import os
import random
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future

import attrs

from stigg_cache._support import fork
from stigg_cache._support.clock import Clock
from stigg_cache._support.memory_only import refuse_io
from stigg_cache.adapters.base import Adapter, as_failure
from stigg_cache.core.pacing import RateBucket, TokenBucket, retry_delay
from stigg_cache.core.terms import CachedSnapshot, ScopeKey, StiggHealth
from stigg_cache.errors import FailureKind, StiggUnavailableError
from stigg_cache.models import Snapshot
from stigg_cache.stores.layered import Fence, SnapshotCache

DEFAULT_FETCH_CONCURRENCY = 8  # live fetches at once (a check waits for each)
DEFAULT_BACKGROUND_FETCHES = 6  # refreshes nobody waits for, at once: slots of their own
UNPACED_READS_PER_S = 1e9  # an endpoint without a read budget: only a 429 pauses reads
SIBLING_POLL_S = 0.02  # how often a flight looks for a sibling's refresh in the store
LEASE_RETRY_S = 0.25  # how often it tries the lease meanwhile (a write: the holder needs the lock)
PERSIST_WAIT_S = 2.0  # close() waits this long for fetched snapshots to reach the store
CLOSED = "client closed"  # why a flight asked of a closed client has no answer
FETCHES_PER_FLIGHT = 2  # an answer an invalidation overtook is asked for again, once


@attrs.define(eq=False)
class _Flight:
    future: Future[CachedSnapshot]
    begun: int  # Health.answers when it started
    started: float  # time.monotonic(): waits on a Future run on real time, whatever the clock
    started_wall: float  # the client's clock, to compare with a stored snapshot's fetch time
    basis: float  # fetch time (wall) of the snapshot this process held when it began, or -inf
    slots: threading.BoundedSemaphore  # the pool it holds a slot of, given back when it ends
    deadline_reported: bool = False
    on_sibling: bool = False  # waiting for another process's refresh: not asking Stigg


class Fetcher:
    """Runs adapter fetches on a bounded pool, one flight per scope."""

    def __init__(
        self,
        adapter: Adapter,
        cache: SnapshotCache,
        health: StiggHealth,
        clock: Clock,
        *,
        check_timeout_s: float,
        fetch_timeout_s: float,
        concurrency: int = DEFAULT_FETCH_CONCURRENCY,
        background: int = DEFAULT_BACKGROUND_FETCHES,
        reads: RateBucket | None = None,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._adapter = adapter
        # Stigg's read budget (Edge: fleet-wide on a shared outbox), or this process's own
        # bucket that only a 429 ever empties: every 429 backs reads off on one schedule.
        self._reads = reads or TokenBucket(UNPACED_READS_PER_S, UNPACED_READS_PER_S)
        self._throttled = 0  # 429s in a row
        self._jitter = jitter
        self._cache = cache
        self._health = health
        self._clock = clock
        self._check_timeout_s = check_timeout_s
        self._fetch_timeout_s = fetch_timeout_s
        # Daemon threads, not an executor: a fetch stuck on a blackholed
        # socket must never hold up the application's exit.
        self._concurrency = (concurrency, background)
        self._slots = threading.BoundedSemaphore(concurrency)
        self._background_slots = threading.BoundedSemaphore(background)
        self._closed = False
        self._flights: dict[ScopeKey, _Flight] = {}
        self._last_asked: ScopeKey | None = None  # the scope this process last wanted read
        self._lock = threading.Lock()
        self._owner = _lease_owner()
        self._stop = threading.Event()
        self._persisted = threading.Condition()
        self._persisting = 0  # fetched snapshots on their way to the store
        fork.renew_after_fork(self, Fetcher._renew)

    def _renew(self) -> None:
        """In a forked child no flight of the parent will land: forget them and their slots.

        A flight inherited from the parent would strand its customer (every
        check joining a fetch that never ends) for as long as the process lives.
        """
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(self._concurrency[0])
        self._background_slots = threading.BoundedSemaphore(self._concurrency[1])
        self._flights = {}
        self._owner = _lease_owner()
        self._stop = fork.renewed(self._stop)
        self._persisted = threading.Condition()
        self._persisting = 0

    def fetch(
        self, scope: ScopeKey, wait_s: float, *, background: bool = False
    ) -> CachedSnapshot | StiggUnavailableError:
        """Join or start the flight for ``scope`` and wait up to ``wait_s`` for it
        (``background``: a refresh no check waits for, on the background slots).

        A flight that has not answered is Stigg's failure only once it has had a
        whole check's budget: a check whose time went elsewhere (a busy store)
        gives up without blaming Stigg.
        """
        refuse_io()
        wait_s = max(wait_s, 0.0)
        flight = self._flight(scope, self._background_slots if background else self._slots)
        if isinstance(flight, StiggUnavailableError):
            return flight
        try:
            return flight.future.result(timeout=wait_s)
        except TimeoutError:
            pass
        except StiggUnavailableError as failure:
            return failure
        if flight.on_sibling or time.monotonic() - flight.started < self._check_timeout_s:
            return StiggUnavailableError(
                FailureKind.TIMEOUT,
                "another process is refreshing it"
                if flight.on_sibling
                else f"no time left to wait for Stigg ({wait_s:.3g}s of the check budget remained)",
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
        self._flight(scope, self._background_slots)

    def probe(self, hint: ScopeKey | None = None) -> None:
        """Ask Stigg once, in the background, whether it answers: a refresh of the scope
        this process last wanted read (else ``hint``), spending a read of the budget and
        the breaker's probe like any read. It answers, or a sibling's refresh of it lands:
        the breaker closes. Nothing known to read: nothing is asked.

        For a process with nothing of its own to ask Stigg once its probe is due (its
        usage sent by a sibling, no check since): else it would stay offline for good.
        """
        scope = self._last_asked or hint
        if scope is not None:
            self._flight(scope, self._background_slots)  # refused for now: asked again later

    def close(self) -> None:
        """Stop taking work; fetches under way end at their own timeout.

        A snapshot fetched but not yet written to the store is waited for (up
        to ``PERSIST_WAIT_S``): a process that exits right after a check keeps
        what it fetched for its next start.
        """
        with self._persisted:  # a fetch counts itself persisting under it, or sees this
            self._closed = True
        self._stop.set()
        with self._persisted:
            self._persisted.wait_for(lambda: not self._persisting, PERSIST_WAIT_S)

    def _flight(
        self, scope: ScopeKey, slots: threading.BoundedSemaphore
    ) -> _Flight | StiggUnavailableError:
        with self._lock:
            self._last_asked = scope
            flight = self._flights.get(scope)
            if flight is not None:
                return flight
            if self._closed:
                return StiggUnavailableError(FailureKind.CONNECTION, CLOSED)
            if not slots.acquire(blocking=False):
                return StiggUnavailableError(
                    FailureKind.TIMEOUT,
                    "every fetch slot is busy with a slow Stigg",
                    not_asked=True,
                )
        refused = self._may_ask()
        if refused is not None:
            slots.release()
            return refused
        with self._lock:
            flight = self._flights.get(scope)
            if flight is not None:  # another thread started it meanwhile
                slots.release()
                self._reads.refund(1, self._clock.monotonic())
                return flight
            held = self._cache.peek(scope)
            basis = -math.inf if held is None else held.snapshot.fetched_at
            flight = _Flight(
                Future(), self._health.answers, time.monotonic(), self._clock.time(), basis, slots
            )
            self._flights[scope] = flight
        threading.Thread(
            target=self._run, args=(scope, flight), daemon=True, name="stigg-cache-fetch"
        ).start()
        return flight

    def _may_ask(self) -> StiggUnavailableError | None:
        """Why no request may go to Stigg now (the read budget, the breaker), or ``None``
        with a read taken from the budget (and the half-open probe, if it is due)."""
        wait_s = self._reads.take(1, self._clock.monotonic())
        if wait_s > 0:  # not Stigg's failure: our pace (or its 429) says wait
            return StiggUnavailableError(
                FailureKind.RATE_LIMITED,
                f"Stigg's read budget is spent for now: next read in {wait_s:.2g}s",
                not_asked=True,
            )
        if not self._health.allow():
            self._reads.refund(1, self._clock.monotonic())
            return StiggUnavailableError(
                FailureKind.CONNECTION,
                f"circuit open after: {self._health.last_error}",
                not_asked=True,
            )
        return None

    def _run(self, scope: ScopeKey, flight: _Flight) -> None:
        sibling = None
        if self._cache.lease(scope, self._owner, self._fetch_timeout_s) is not True:
            sibling = self._sibling_refresh(scope, flight)
        if sibling is None and not self._closed:  # a sibling may have stored its refresh since
            sibling = self._recent(scope, flight)
        if sibling is not None:
            self._finish(scope, flight)
            # Stigg answered a sibling moments ago: the verdict on a probe this flight took.
            self._health.succeeded()
            flight.future.set_result(sibling)
            return
        stored = False
        try:
            stored = self._fetch(scope, flight)
        finally:
            # A stored snapshot tells waiting siblings all they need; a lease given back
            # would be one more write for every fetch, when writes are what they contend for.
            if not stored and not self._closed:  # failed: a sibling may take over at once
                self._cache.lease(scope, self._owner, 0.0)

    def _sibling_refresh(self, scope: ScopeKey, flight: _Flight) -> CachedSnapshot | None:
        """Another process is refreshing ``scope`` (or the store, busy with the writes of
        processes that are, could not say): its snapshot, once in the store.

        ``None`` when this flight should ask Stigg itself: the lease came free
        (the sibling gave up or died), or half a check's budget passed (a slow
        sibling, or a store locked for long, must not cost a waiting check its
        answer: an extra read of Stigg is the lesser harm).
        """
        deadline = flight.started + min(self._fetch_timeout_s, self._check_timeout_s / 2)
        flight.on_sibling = True
        retry_lease_at = time.monotonic() + LEASE_RETRY_S
        try:
            while time.monotonic() < deadline and not self._stop.wait(SIBLING_POLL_S):
                entry = self._recent(scope, flight)  # a read: cheap, never in a writer's way
                if entry is not None:
                    return entry
                if time.monotonic() >= retry_lease_at:  # a write: rarely, or waiters starve
                    retry_lease_at = time.monotonic() + LEASE_RETRY_S  # the holder's own write
                    if self._cache.lease(scope, self._owner, self._fetch_timeout_s) is True:
                        return None  # given back: the holder stored its refresh, or gave up
            return None
        finally:
            flight.on_sibling = False

    def _recent(self, scope: ScopeKey, flight: _Flight) -> CachedSnapshot | None:
        """A snapshot a sibling fetched for this flight's purpose: newer than the one this
        process held when the flight began, and fetched at most a check's budget before
        it began (a refresh landing as this process looked, not an old copy)."""
        since = max(flight.basis, flight.started_wall - self._check_timeout_s)
        return self._cache.fetched_since(scope, since, report=False)

    def _fetch(self, scope: ScopeKey, flight: _Flight) -> bool:
        """Ask Stigg, answer the flight, then store the snapshot; whether it was stored."""
        asked = self._ask(scope, flight)
        if asked is None:
            return False
        fetched, fence = asked
        held = self._cache.hold(fetched, self._clock.monotonic(), fence)
        with self._persisted:
            persisting = not self._closed  # else close() may have shut the store already
            self._persisting += persisting
        self._finish(scope, flight)  # later checks find it in L1
        self._health.succeeded()
        flight.future.set_result(held.entry)
        if not persisting:
            return False
        # The write to L2 holds no caller and no fetch slot: a busy store (another
        # process's long write) costs checks nothing and is never taken for a slow Stigg.
        try:
            return self._cache.persist(fetched, held.value, fence)
        finally:
            with self._persisted:
                self._persisting -= 1
                self._persisted.notify_all()

    def _ask(self, scope: ScopeKey, flight: _Flight) -> tuple[Snapshot, Fence] | None:
        """Stigg's snapshot of ``scope`` and the fence noted before it was asked; ``None``
        once the flight is answered with a failure.

        An answer that an invalidation overtook (here or in any process sharing the
        store: a grant, a webhook) answers no check and is held nowhere: checks begun
        after the invalidation may have joined this flight, and until its fenced write
        is refused L1 would hand it to the next. Stigg is asked again, once.
        """
        customer_id, resource_id = scope
        for _ in range(FETCHES_PER_FLIGHT):
            fence = self._cache.fence(scope)  # an invalidation from now on: kept nowhere
            try:
                snapshot = self._adapter.fetch_entitlements(
                    customer_id, resource_id, timeout_s=self._fetch_timeout_s
                )
            except Exception as error:  # an adapter bug too: it must not strand waiters
                self._failed(scope, flight, as_failure(error))
                return None
            if self._closed:  # answered after close(): nobody asks, the store may be shut
                self._failed(scope, flight, StiggUnavailableError(FailureKind.CONNECTION, CLOSED))
                return None
            self._throttled = 0
            if not self._cache.fenced_since(scope, fence):
                return attrs.evolve(snapshot, fetched_at=self._clock.time()), fence
        self._finish(scope, flight)
        self._health.succeeded()  # Stigg answered: the invalidations are what kept its answers
        flight.future.set_exception(
            StiggUnavailableError(
                FailureKind.TIMEOUT,
                f"invalidated while being fetched, {FETCHES_PER_FLIGHT} times in a row",
            )
        )
        return None

    def _failed(self, scope: ScopeKey, flight: _Flight, failure: StiggUnavailableError) -> None:
        """Stigg did not answer the flight's fetch: its waiters get ``failure``."""
        self._finish(scope, flight)
        if failure.kind is FailureKind.RATE_LIMITED:
            self._throttle(failure)
        elif not flight.deadline_reported and not self._closed:
            # a fetch cut short by our own close() is no mark against Stigg
            self._health.failed(failure, begun=flight.begun)
        flight.future.set_exception(failure)

    def _throttle(self, failure: StiggUnavailableError) -> None:
        """A 429 on a read: Stigg is up and says slow down. Reads pause for its Retry-After,
        or on our own backoff when it gives none (the Edge API does not), for every process
        pacing with the same bucket; it is no mark against Stigg's health."""
        self._throttled += 1
        delay = retry_delay(self._throttled, self._jitter(), failure.retry_after_s)
        self._reads.pause(delay, self._clock.monotonic())
        self._health.succeeded()  # it answered: a half-open probe this was is resolved

    def _finish(self, scope: ScopeKey, flight: _Flight) -> None:
        with self._lock:
            self._flights.pop(scope, None)
        flight.slots.release()


def _lease_owner() -> str:
    """Names this process's flights in refresh leases (renewed in a forked child)."""
    return f"{os.getpid()}:{uuid.uuid4().hex[:8]}"
