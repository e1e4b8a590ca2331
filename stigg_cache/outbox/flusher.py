"""The flusher: a background thread draining the outbox to Stigg.

One loop, two lanes (events, usage). Each pass: claim the oldest sendable
records within the rate budget, dead-letter those past Stigg's 7-day dedup
window, send, and settle the outcome (:func:`~stigg_cache.core.pacing.plan_failure`).
It never sends while the breaker is open, backs off exponentially with
jitter, and honours ``Retry-After``.
"""

from __future__ import annotations

import json
import math
import os
import random
import socket
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import assert_never

import attrs

from stigg_cache._support import fork
from stigg_cache._support.clock import Clock
from stigg_cache._support.log import logger
from stigg_cache.adapters._stigg_json import UsageCounts
from stigg_cache.adapters.base import Adapter, as_failure
from stigg_cache.core.ledger import UsageKey
from stigg_cache.core.pacing import (
    DEDUP_WINDOW_S,
    EVENTS_PER_SECOND,
    MAX_EVENTS_PER_BATCH,
    MAX_USAGE_PER_BATCH,
    USAGE_CALLS_PER_MINUTE,
    RateBucket,
    SendOutcome,
    TokenBucket,
    plan_failure,
    retry_delay,
)
from stigg_cache.core.terms import ScopeKey, StiggHealth
from stigg_cache.errors import (
    ConfigurationError,
    FailureKind,
    StiggUnavailableError,
    StoreError,
)
from stigg_cache.outbox.base import Claimed, Outbox, SharedPacing
from stigg_cache.outbox.records import RecordKind

DEFAULT_LEASE_S = 30.0  # a sender that dies holds its batch this long
DEFAULT_SEND_TIMEOUT_S = 10.0  # well under the lease: a send never outlives its lease
# A send's timeout bounds each phase of it (connect, write, read: the body is read whole by
# its deadline), so a send lasts at most about three of them: a quarter of the lease each
# keeps the whole send inside the lease, and no second sender claims a batch still in flight.
SEND_PHASES = 3
MAX_REQUEST_BYTES = 4_000_000  # a few MB a request: 1,000 events of 1 MB would be 1 GB
IDLE_POLL_S = 0.5  # other processes may enqueue into a shared outbox
RATE_SAFETY = 0.97  # stay just under Stigg's limit so clock skew never earns a 429
# Send half a second's worth at a time: a batch that arrives late (a slow send, a
# busy host) then still fits Stigg's budget, where a full second's worth would
# meet an empty bucket and earn a 429 and a Retry-After pause.
BURST_S = 0.5

# ((customer id, idempotency key) of each record, acked_at, Stigg's usage of the feature once
# it counted them, by record)
Acknowledge = Callable[[Sequence[UsageKey], float, Mapping[UsageKey, float]], None]
# Asks Stigg once in the background whether it answers (a read), given the scope of the last
# record this flusher sent as a hint of what to read: the fetcher's ``probe``.
Probe = Callable[[ScopeKey | None], None]


def _counted(batch: Sequence[Claimed], counts: UsageCounts | None) -> dict[int, float]:
    """By record id: the usage Stigg answered for the record's feature (usage records)."""
    if not counts:
        return {}
    counted: dict[int, float] = {}
    for claimed in batch:
        record = claimed.record
        value = counts.get((record.customer_id, record.resource_id, record.name))
        if value is not None:
            counted[claimed.id] = value
    return counted


@attrs.define
class _Lane:
    kind: RecordKind
    batch_limit: int
    bucket: RateBucket
    cost_per_record: bool  # events spend a token each; usage a token per call
    backlog: bool = False
    cap: int = 0  # the most records a batch takes now: smaller while a refused batch is split

    def __attrs_post_init__(self) -> None:
        self.cap = self.cap or self.batch_limit

    @property
    def full_batch(self) -> int:
        """Records in a batch worth waiting for while a backlog drains."""
        if not self.cost_per_record:
            return 1
        return max(1, min(self.cap, math.floor(self.bucket.capacity)))


@attrs.frozen
class FlushResult:
    """What ``flush()`` achieved before its deadline."""

    drained: bool
    pending: int
    dead_letters: int


class Flusher:
    """Sends outbox records to Stigg from a daemon thread."""

    def __init__(
        self,
        outbox: Outbox,
        adapter: Adapter,
        health: StiggHealth,
        clock: Clock,
        *,
        acknowledge: Acknowledge,
        events_per_second: float = EVENTS_PER_SECOND,
        usage_calls_per_minute: float = USAGE_CALLS_PER_MINUTE,
        lease_s: float = DEFAULT_LEASE_S,
        send_timeout_s: float = DEFAULT_SEND_TIMEOUT_S,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._outbox = outbox
        self._adapter = adapter
        self._health = health
        self._clock = clock
        self._acknowledge = acknowledge
        self._lease_s = lease_s
        self._send_timeout_s = min(send_timeout_s, lease_s / (SEND_PHASES + 1))
        self._jitter = jitter
        self._lanes = _lanes(outbox, events_per_second, usage_calls_per_minute)
        self.owner = _lease_owner()
        self._failures = 0
        self._resume_at = 0.0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._settled = threading.Condition()
        self._starting = threading.Lock()
        self.sent = 0
        self.last_error: str | None = None
        self.auth_error: str | None = None  # Stigg refuses our key for sends: paused
        self.fault: str | None = None  # why the last pass over the outbox failed, if it did
        self._thread: threading.Thread | None = None
        self._probe: Probe | None = None
        self._last_scope: ScopeKey | None = None  # of the last record sent (or tried)
        self._probe_at = 0.0  # monotonic: no idle probe before this
        fork.renew_after_fork(self, Flusher._renew)

    def _renew(self) -> None:
        """In a forked child: a lease owner of its own, and its thread started on first use.

        Sharing the parent's owner name would let the child settle or give back
        batches the parent is sending, which then go out twice.
        """
        self.owner = _lease_owner()
        self._wake, self._stop = threading.Event(), fork.renewed(self._stop)
        self._settled = threading.Condition()
        self._starting = threading.Lock()
        self._thread = None

    def start(self) -> None:
        """Start the background thread, once per process (never after ``close``)."""
        with self._starting:
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(
                    target=self._run, daemon=True, name="stigg-cache-flusher"
                )
                self._thread.start()

    def probe_with(self, probe: Probe) -> None:
        """Once the breaker's probe is due and this flusher has nothing to send, call
        ``probe`` (once per due probe): a process whose usage a sibling sent, and that
        asks Stigg nothing else, learns Stigg is back all the same."""
        self._probe = probe

    def wake(self) -> None:
        """Look at the outbox now (new records, Stigg back)."""
        if self._thread is None:
            self.start()
        self._resume_at = min(self._resume_at, self._clock.monotonic())
        self._wake.set()

    def close(self, timeout_s: float = 2.0) -> None:
        """Stop (bounded wait) and give back leases, so another sender need not wait them out.

        A send still hanging on a dead connection may land later: its records
        are then sent twice, which Stigg deduplicates by their unchanged keys.
        """
        self._stop.set()
        self._wake.set()
        if self._thread is not None and self._thread.is_alive():
            self._thread.join(timeout_s)
        try:
            self._outbox.release(self.owner)
        except StoreError as error:
            logger.warning(  # a string: a record holding the exception would keep its frames
                "stigg_cache.outbox_failed: %s",
                str(error),
                extra={"event": "stigg_cache.outbox_failed"},
            )

    def resumes_at(self) -> float | None:
        """Wall time before which nothing is sent (a backoff, a pause, Stigg's ``Retry-After``
        on a lane's bucket); ``None`` when sending may go on now."""
        now = self._clock.monotonic()
        wait = self._resume_at - now
        for lane in self._lanes:
            wait = max(wait, -lane.bucket.available(now) / lane.bucket.rate)  # paused: < 0
        return None if wait <= 0 else self._clock.time() + wait

    def pacing(self) -> str | None:
        """How sending is paced when not on the fleet's shared budget (a bucket's ``pacing``,
        e.g. a share of the account's rate while the shared bucket is unreachable)."""
        notes = [getattr(lane.bucket, "pacing", None) for lane in self._lanes]
        return next((note for note in notes if isinstance(note, str)), None)

    def flush(self, timeout_s: float, *, cancel: threading.Event | None = None) -> FlushResult:
        """Drain what can be drained within ``timeout_s`` (not while Stigg is offline).

        Returns early once ``cancel`` is set. Never drained while the outbox
        can be read only in part (a shared outbox unreachable): its ``pending``
        then counts what could be read.
        """
        deadline = self._clock.monotonic() + timeout_s
        self.wake()
        while True:
            stats = self._outbox.stats(self._clock.time())
            drained = stats.pending == 0 and stats.problem is None
            remaining = deadline - self._clock.monotonic()
            cancelled = cancel is not None and cancel.is_set()
            if drained or remaining <= 0 or self._health.offline or cancelled:
                return FlushResult(drained, stats.pending, stats.dead_letters)
            with self._settled:
                self._settled.wait(min(remaining, 0.05))

    # -- the loop ---------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                results = [self._pump(lane) for lane in self._lanes]  # every lane, every pass
                worked = any(results)
                self.fault = None
            except Exception as error:  # the outbox failed, or anything else: never die
                if self._stop.is_set():
                    return  # closed under a send that outlived close(): nothing to record
                problem = str(error) if isinstance(error, StoreError) else repr(error)
                if problem != self.fault:  # logged once per fault, not every pass
                    logger.warning(
                        "stigg_cache.outbox_failed: %s",
                        problem,
                        extra={"event": "stigg_cache.outbox_failed"},
                    )
                self.last_error = self.fault = problem
                worked = False
            if not worked:
                self._probe_if_due()
                self._wake.wait(self._idle_wait())
                self._wake.clear()

    def _probe_if_due(self) -> None:
        """Nothing was sent: if Stigg failed and has not answered since, ask it once when
        the breaker's backoff has passed (a read). It takes the place of the send this
        flusher would have retried: never before its own backoff either. Stigg still
        down, the probe fails and the breaker backs off further, with jitter."""
        now = self._clock.monotonic()
        if self._probe is None or self._health.probe_in() != 0:
            return
        if now < max(self._resume_at, self._probe_at):
            return
        self._probe_at = now + IDLE_POLL_S  # not taken (no read left, no slot): again then
        try:
            self._probe(self._last_scope)
        except Exception:  # a bug: the flusher goes on all the same
            logger.exception(
                "stigg_cache.probe_failed", extra={"event": "stigg_cache.probe_failed"}
            )

    def _idle_wait(self) -> float:
        now = self._clock.monotonic()
        if self._resume_at > now:
            wait = self._resume_at - now
        else:
            wait = IDLE_POLL_S
            for lane in self._lanes:
                if lane.backlog:
                    need = lane.full_batch
                    wait = min(wait, (need - lane.bucket.available(now)) / lane.bucket.rate)
        probe_in = self._health.probe_in()
        if probe_in is not None and self._probe is not None:  # wake when a probe is due
            wait = min(wait, max(probe_in, self._probe_at - now, self._resume_at - now))
        return max(0.001, wait)

    def _pump(self, lane: _Lane) -> bool:
        now = self._clock.monotonic()
        if now < self._resume_at:
            return False
        granted = self._tokens(lane, now)
        if not granted:
            return False
        limit = min(granted if lane.cost_per_record else lane.batch_limit, lane.cap)
        wall = self._clock.time()
        claimed = self._outbox.claim(lane.kind, limit, self.owner, now=wall, lease_s=self._lease_s)
        lane.backlog = len(claimed) == limit
        expired = {c.id for c in claimed if c.record.stamped_at < wall - DEDUP_WINDOW_S}
        if expired:
            self._outbox.settle(
                dead=list(expired),
                owner=self.owner,
                now=wall,
                reason="older than Stigg's 7-day dedup window: replaying could count it twice",
            )
        batch = [c for c in claimed if c.id not in expired]
        allowed = bool(batch) and self._health.allow()
        spent = (len(batch) if lane.cost_per_record else 1) if allowed else 0
        if spent < granted:
            lane.bucket.refund(granted - spent, now)
        if not allowed:
            if batch:  # the breaker is open: give the claim back untouched
                self._outbox.release(self.owner)
                self._resume_at = now + IDLE_POLL_S
            return bool(claimed) and not batch
        self._send_in_requests(lane, batch, started=now)
        return True

    def _send_in_requests(self, lane: _Lane, batch: list[Claimed], *, started: float) -> None:
        """Send a claim in requests of at most ``MAX_REQUEST_BYTES``, oldest first; a request
        starts only while a whole send still fits in the lease, the rest is given back."""
        while batch:
            part = _within_bytes(batch)
            self._send(lane, part)
            batch = batch[len(part) :]
            if batch and self._clock.monotonic() - started > self._send_timeout_s:
                self._outbox.release(self.owner)  # this sender's only other leases
                return

    def _tokens(self, lane: _Lane, now: float) -> int:
        """Tokens for the next batch (a call's worth for usage), 0 to wait.

        While a backlog drains, wait for a full batch's worth rather than send
        crumbs, or for what is left if that is less.
        """
        most = lane.cap if lane.cost_per_record else 1
        if not lane.backlog:
            return lane.bucket.acquire(most, 1, now)
        granted = lane.bucket.acquire(most, lane.full_batch, now)
        if not granted:
            left = self._outbox.stats(self._clock.time()).pending
            if left < lane.full_batch:
                granted = lane.bucket.acquire(most, max(1, left), now)
        return granted

    def _send(self, lane: _Lane, batch: Sequence[Claimed]) -> None:
        payloads = [json.loads(c.record.payload) for c in batch]
        ids = [c.id for c in batch]
        self._last_scope = (batch[0].record.customer_id, batch[0].record.resource_id)
        begun = self._health.answers
        counts: UsageCounts | None = None
        # Stigg counts a record as it takes it in, before its answer is back here: an
        # acknowledgement is dated when the request left, the earliest Stigg can have
        # counted it. A snapshot fetched after that may show it (its usage tells), one
        # fetched before cannot; dated at the answer, a snapshot fetched in between
        # had it added once more.
        sent_at = self._clock.time()
        try:
            if lane.kind is RecordKind.EVENT:
                self._adapter.report_events(payloads, timeout_s=self._send_timeout_s)
            else:
                counts = self._adapter.report_usage(payloads, timeout_s=self._send_timeout_s)
        except Exception as error:  # an adapter bug too: it must not end the flusher
            self._failed(lane, batch, as_failure(error), begun)
            return
        counted = _counted(batch, counts)
        keys = {c.id: (c.record.customer_id, c.record.idempotency_key) for c in batch}
        # This process's checks first: until they know, a snapshot showing it adds it again.
        self._acknowledge(list(keys.values()), sent_at, {keys[i]: n for i, n in counted.items()})
        self._outbox.settle(sent=ids, owner=self.owner, now=sent_at, counted=counted)
        self._health.succeeded()
        self._failures = 0
        self.auth_error = None
        lane.cap = min(lane.batch_limit, 2 * lane.cap)  # after a split: back up to full batches
        self.sent += len(batch)
        self._notify()

    def _failed(
        self, lane: _Lane, batch: Sequence[Claimed], error: StiggUnavailableError, begun: int
    ) -> None:
        wall = self._clock.time()
        ids = [c.id for c in batch]
        outcome = plan_failure(error.kind, len(batch), error.status_code)
        if error.kind is FailureKind.RATE_LIMITED or outcome in (
            SendOutcome.SPLIT,
            SendOutcome.DEAD,
        ):
            # Stigg answered: it is reachable. Say so, or a half-open breaker whose probe
            # this send was would wait for a verdict forever (found by the chaos run).
            self._health.succeeded()
        match outcome:
            case SendOutcome.SPLIT:  # the halves go out as the bucket allows, oldest first
                lane.cap = max(1, len(batch) // 2)
                self._outbox.settle(retry=ids, owner=self.owner, now=wall, retry_at=wall)
            case SendOutcome.DEAD:
                lane.cap = lane.batch_limit  # the bad record is found: full batches again
                self._outbox.settle(
                    dead=ids, owner=self.owner, now=wall, reason=f"Stigg rejected it: {error}"
                )
                self._notify()
            case SendOutcome.RETRY | SendOutcome.PAUSE:
                if outcome is SendOutcome.PAUSE:  # our key or endpoint is refused
                    self._refused(error)
                self._failures += 1
                self.last_error = str(error)
                delay = retry_delay(self._failures, self._jitter(), error.retry_after_s)
                if error.kind is FailureKind.RATE_LIMITED:
                    lane.bucket.pause(delay, self._clock.monotonic())
                elif not self._stop.is_set():  # a send our close() cut is no mark on Stigg
                    # a refused key resolves a probe too, and never trips the breaker
                    self._health.failed(error, begun=begun)
                self._resume_at = self._clock.monotonic() + delay
                self._outbox.settle(
                    retry=ids, owner=self.owner, now=wall, retry_at=wall + delay, reason=str(error)
                )
            case _:
                assert_never(outcome)

    def _refused(self, error: StiggUnavailableError) -> None:
        """Stigg refuses our key or endpoint: every record is kept; said once, and shown
        (a refused key is logged once a minute by the health it is reported to)."""
        if self.auth_error is None and error.kind is not FailureKind.AUTH:
            logger.error(
                "stigg_cache.auth_refused: %s; usage is kept and sent once Stigg "
                "accepts the key (check api_key and base_url)",
                str(error),
                extra={"event": "stigg_cache.auth_refused"},
            )
        self.auth_error = str(error)

    def _notify(self) -> None:
        with self._settled:
            self._settled.notify_all()


def _lanes(
    outbox: Outbox, events_per_second: float, usage_calls_per_minute: float
) -> tuple[_Lane, _Lane]:
    """The events lane and the usage lane, each paced by its bucket (the fleet's if shared)."""
    event_rate = events_per_second * RATE_SAFETY
    usage_rate = usage_calls_per_minute / 60 * RATE_SAFETY
    return (
        _Lane(
            RecordKind.EVENT,
            MAX_EVENTS_PER_BATCH,
            pacing_bucket(outbox, "events", event_rate, _burst(event_rate)),
            cost_per_record=True,
        ),
        _Lane(
            RecordKind.USAGE,
            MAX_USAGE_PER_BATCH,
            pacing_bucket(outbox, "usage", usage_rate, max(1.0, usage_rate)),
            cost_per_record=False,
        ),
    )


def _within_bytes(batch: list[Claimed]) -> list[Claimed]:
    """The oldest records of a batch whose payloads fit in one request (at least one)."""
    size = 0
    for index, claimed in enumerate(batch):
        payload = claimed.record.payload
        size += len(payload) if payload.isascii() else len(payload.encode())
        if size > MAX_REQUEST_BYTES and index:
            return batch[:index]
    return batch


def _lease_owner() -> str:
    """Names this sender in leases: unique per process and per flusher."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def read_budget(outbox: Outbox, per_minute: float | None) -> RateBucket | None:
    """The bucket fetches are paced with (shared like the outbox), or ``None``: no budget."""
    if per_minute is None:
        return None
    if isinstance(per_minute, bool) or not isinstance(per_minute, int | float) or per_minute <= 0:
        raise ConfigurationError(f"reads_per_minute must be a positive number, got {per_minute!r}")
    rate = per_minute / 60 * RATE_SAFETY
    return pacing_bucket(outbox, "reads", rate, max(1.0, rate * BURST_S))


def pacing_bucket(outbox: Outbox, name: str, rate: float, capacity: float) -> RateBucket:
    """The fleet's bucket when the outbox is shared (:class:`SharedPacing`), else this process's."""
    if isinstance(outbox, SharedPacing):
        return outbox.rate_bucket(name, rate, capacity)
    return TokenBucket(rate, capacity)


def _burst(event_rate: float) -> float:
    return max(1.0, min(event_rate * BURST_S, MAX_EVENTS_PER_BATCH))
