"""Usage intake: validate, make durable, count locally, wake the flusher."""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence

import attrs

from stigg_cache._engine.breaker import Health
from stigg_cache._support import fork
from stigg_cache._support.clock import Clock
from stigg_cache._support.memory_only import refuse_io
from stigg_cache.adapters.base import Adapter
from stigg_cache.core.ledger import DEFAULT_SETTLE_S, LocalUsage, TallyKey, UsageLedger
from stigg_cache.core.pacing import EVENTS_PER_SECOND, USAGE_CALLS_PER_MINUTE
from stigg_cache.core.reconcile import Measure
from stigg_cache.core.share import HeadroomShare
from stigg_cache.core.terms import ScopeKey
from stigg_cache.errors import OutboxFullError, StoreError
from stigg_cache.outbox.base import Outbox, OutboxStats, SharedUsage, UsageChanges
from stigg_cache.outbox.flusher import DEFAULT_LEASE_S, Flusher
from stigg_cache.outbox.records import Receipt, RecordKind, UsageRecord
from stigg_cache.policy.model import Meter, PolicyRef

DEFAULT_OUTBOX_MAX_RECORDS = 5_000_000  # 1.4 hours of Stigg's whole event rate; ~3 GB
DEPTH_RECHECK_S = 1.0
# A metered check reads what other processes changed in the shared outbox at most this often:
# the lag with which a sibling's usage counts here (a query of a few microseconds when idle).
SYNC_INTERVAL_S = 0.005
MAX_TOUCHED = 100_000  # customers with usage reported offline, remembered for reconciliation
_monotonic = time.monotonic  # a module global: one lookup fewer on every metered check


class UsageService:
    """Owns the outbox, the local usage ledger and the flusher of one client."""

    def __init__(
        self,
        outbox: Outbox,
        adapter: Adapter,
        health: Health,
        clock: Clock,
        policy: PolicyRef,
        *,
        settle_s: float = DEFAULT_SETTLE_S,
        events_per_second: float = EVENTS_PER_SECOND,
        usage_calls_per_minute: float = USAGE_CALLS_PER_MINUTE,
        lease_s: float = DEFAULT_LEASE_S,
        max_records: int = DEFAULT_OUTBOX_MAX_RECORDS,
    ) -> None:
        self.outbox = outbox
        self._max_records = max_records
        self._depth = 0
        self._depth_read_at = -DEPTH_RECHECK_S
        self._clock = clock
        self._policy = policy
        self._meters_of: tuple[str, dict[str, list[tuple[str, Meter]]]] = ("", {})
        self.ledger = UsageLedger(settle_s)
        self._touched: dict[ScopeKey, None] = {}
        self._touched_lock = threading.Lock()
        self._consuming = threading.Lock()
        fork.renew_after_fork(self, UsageService._renew)
        self._shared = outbox if isinstance(outbox, SharedUsage) else None
        self._cursor = -1  # the shared outbox's changes seen so far (-1: all it holds)
        # Customers (and resources) whose usage in the shared outbox was read: each is read
        # when first needed, so start-up reads nothing proportional to the outbox.
        self._loaded: set[ScopeKey] = set()
        # time.monotonic() of the next read of the shared outbox (a rate of I/O, not an age
        # of data); never for an outbox that is not shared: one comparison on the hot path
        self.next_sync = 0.0 if self._shared is not None else math.inf
        self._syncing = threading.Lock()
        if self._shared is None:  # this process's own: count what it holds
            meters = self._meters()
            for record, acked_at in outbox.unsettled():
                self._count(record, meters, acked_at)
        else:
            with contextlib.suppress(StoreError):  # else every change is read once, later
                self._cursor = self._shared.cursor()
        self.flusher = Flusher(
            outbox,
            adapter,
            health,
            clock,
            acknowledge=self.ledger.acknowledge,
            events_per_second=events_per_second,
            usage_calls_per_minute=usage_calls_per_minute,
            lease_s=lease_s,
        )
        self.flusher.start()

    def enqueue(self, records: Sequence[UsageRecord], *, offline: bool) -> list[Receipt]:
        """Make records durable (all or none), count them locally, wake the flusher.

        ``offline``: Stigg is not answering; the customers are refreshed on reconnect.
        """
        self._make_room(len(records))
        self._meters()  # the outbox knows which events count before it takes these
        receipts = self.outbox.enqueue(records, self._clock.time())
        self._counted(records, receipts, offline=offline)
        return receipts

    def _counted(
        self, records: Sequence[UsageRecord], receipts: Sequence[Receipt], *, offline: bool
    ) -> None:
        """Count enqueued records here at once (siblings see them at their next sync)."""
        meters = self._meters()
        if not offline and not any(r.counts_locally(meters) for r in records):
            self.flusher.wake()  # nothing here counts (a bulk report of events no meter reads)
            return
        for record, receipt in zip(records, receipts, strict=True):
            if not receipt.duplicate:
                self._count(record, meters)
                if offline:
                    self._touch((record.customer_id, record.resource_id))
        self.flusher.wake()

    def local_usage(
        self,
        scope: TallyKey,
        snapshot_fetched_at: float | None,
        floor: float | None,
        snapshot_usage: float | None,
    ) -> LocalUsage | None:
        """Usage to add for ``scope``: the host's, and the shared outbox's (lag: a sync)."""
        if _monotonic() >= self.next_sync:
            self.sync()
        self.read_customer(scope[0], scope[1])
        return self.local_usage_now(scope, snapshot_fetched_at, floor, snapshot_usage)

    def local_usage_now(
        self,
        scope: TallyKey,
        snapshot_fetched_at: float | None,
        floor: float | None,
        snapshot_usage: float | None,
    ) -> LocalUsage | None:
        """:meth:`local_usage` from memory alone, for a step on the event loop (its state's
        ``io`` is memory: :meth:`known` said no read of the shared outbox is due). The
        usage of a customer this process could not read from the shared outbox is
        incomplete (``LocalUsage.complete``): what this process reported is only part
        of it, and a check must not grant on it."""
        counted = self.ledger.local_usage(scope, snapshot_fetched_at, floor, snapshot_usage)
        if self._shared is None or (scope[0], scope[1]) in self._loaded:
            return counted
        return attrs.evolve(counted or LocalUsage(0.0), complete=False)

    def known(self, customer_id: str, resource_id: str | None) -> bool:
        """Whether a customer's local usage is all in memory and current: there is no
        shared outbox, or this process has read the customer's from it and no read of
        what siblings reported since is due (its check then needs no I/O). A check that
        answered with what was known while a read was due missed what siblings had
        reported since, for as long as reads lagged (issue 28 item 2)."""
        return self._shared is None or (
            (customer_id, resource_id) in self._loaded and _monotonic() < self.next_sync
        )

    def held(self, scope: ScopeKey) -> None:
        """A scope's snapshot came into L1: its customer's usage is read now (with I/O
        allowed), so a check that L1 answers needs none for it."""
        self.read_customer(*scope)

    def read_customer(self, customer_id: str, resource_id: str | None) -> None:
        """Count what the shared outbox holds of one customer, the first time it is needed.

        Threads read customers in parallel (no lock: a customer read twice at once is
        counted once). Changes another thread follows meanwhile are read again afterwards
        (an acknowledgement of a record not yet counted here would be lost). An outbox
        that does not answer leaves it for the next check; until then the customer's usage
        is incomplete (:meth:`local_usage_now`), and no check grants on it.

        Raises:
            WouldBlock: called on the event loop (a bug: only steps whose ``io`` is a store
                or Stigg read the outbox, and those run on a thread).
        """
        scope = (customer_id, resource_id)
        if self._shared is None or scope in self._loaded:
            return
        refuse_io()
        since = self._cursor  # before the read: what moves after it is read again below
        try:
            meters = self._meters()  # first: the outbox learns which events count
            held = self._shared.held_of(customer_id, resource_id)
            for one in held:  # a thread reading the same customer meanwhile: counted once
                self._count(one.record, meters, one.acked_at, one.counted)
            self._loaded.add(scope)  # only now: a check must not answer with part of it
            self._follow(self._shared.changes(since))
        except StoreError:
            self._loaded.discard(scope)

    def sync(self) -> None:
        """Follow the shared outbox: usage added, acknowledged or dead-lettered by any process.

        An unreadable outbox leaves the view as it was (``status()`` reports the outbox).
        """
        if self._shared is None:
            return
        with self._syncing:  # a thread that finds another at it waits for its result
            if time.monotonic() < self.next_sync:
                return  # read meanwhile by the thread it waited for
            with contextlib.suppress(StoreError):  # or the view lags; status() tells why
                self._follow(self._shared.changes(self._cursor))
            self.next_sync = time.monotonic() + SYNC_INTERVAL_S

    def consume(
        self, record: UsageRecord, admit: Callable[[HeadroomShare | None], bool], *, offline: bool
    ) -> Receipt | None:
        """Enqueue ``record`` only if ``admit()``, judged with every process's usage, agrees.

        This process's threads take turns; on a shared outbox the look and the
        enqueue are also one transaction (or a retried compare-and-set): no
        process adds usage in between. ``None`` when refused (nothing enqueued).
        """
        self._make_room(1)
        self.read_customer(record.customer_id, record.resource_id)
        with self._consuming:  # this process's threads take turns in any case
            if self._shared is None:
                now = self._clock.time()
                receipts = self.outbox.enqueue([record], now) if admit(None) else None
            else:

                def admitted(changes: UsageChanges) -> bool:
                    self._follow(changes)
                    return admit(changes.share)

                receipts = self._shared.enqueue_if(
                    [record], self._clock.time(), after=self._cursor, admit=admitted
                )
        if receipts is None:
            self._depth -= 1
            return None
        self._counted([record], receipts, offline=offline)
        return receipts[0]

    def _follow(self, changes: UsageChanges) -> None:
        """Apply changes: records of customers read here count; acknowledgements and dead
        letters apply to whatever this process counts (its own records included)."""
        meters, loaded = self._meters(), self._loaded
        for held in changes.held:
            record = held.record
            if (record.customer_id, record.resource_id) in loaded:
                self._count(record, meters, held.acked_at, held.counted)
            if held.acked_at is not None:  # known here as pending: acknowledged by some process
                key = (record.customer_id, record.idempotency_key)
                counted = {} if held.counted is None else {key: held.counted}
                self.ledger.acknowledge([key], held.acked_at, counted)
        self.ledger.forget(changes.dead)
        self._cursor = max(self._cursor, changes.cursor)

    def _make_room(self, adding: int) -> None:
        """Refuse records beyond ``max_records`` (the depth is re-read once a second)."""
        now = self._clock.monotonic()
        if now - self._depth_read_at >= DEPTH_RECHECK_S or self._depth + adding > self._max_records:
            self._depth = self.outbox.stats(self._clock.time()).pending
            self._depth_read_at = now
        if self._depth + adding > self._max_records:
            raise OutboxFullError(
                f"the outbox holds {self._depth:,} records, its limit is {self._max_records:,}: "
                f"these {adding} were NOT recorded. Stigg has been unreachable for long; "
                "raise outbox_max_records or see client.status() and dead letters"
            )
        self._depth += adding

    def _renew(self) -> None:
        """In a forked child: locks of its own; the parent reconciles what it touched."""
        self._touched_lock = threading.Lock()
        self._touched = {}
        self._syncing = threading.Lock()
        self._consuming = threading.Lock()
        self.ledger.renew_lock()

    def _touch(self, scope: ScopeKey) -> None:
        """Remember a customer to refresh on reconnect, most recent last, within a bound."""
        with self._touched_lock:
            self._touched.pop(scope, None)
            self._touched[scope] = None
            if len(self._touched) > MAX_TOUCHED:  # the least recent: refreshed by its next check
                del self._touched[next(iter(self._touched))]

    def touched(self) -> list[ScopeKey]:
        """Customers that reported usage while offline, oldest first; the list empties."""
        with self._touched_lock:
            scopes, self._touched = list(self._touched), {}
        return scopes

    def stats(self) -> OutboxStats:
        """Outbox depth and dead letters; zeros and the ``problem`` if the outbox cannot say."""
        try:
            return self.outbox.stats(self._clock.time())
        except StoreError as error:
            return OutboxStats(0, 0, 0, 0, None, problem=f"outbox unreadable: {error}")

    def close(self) -> None:
        """Stop the flusher; the outbox is closed by whoever opened it."""
        self.flusher.close()

    def _count(
        self,
        record: UsageRecord,
        meters: dict[str, list[tuple[str, Meter]]],
        acked_at: float | None = None,
        counted: float | None = None,
    ) -> None:
        key, at = record.idempotency_key, record.stamped_at
        for feature_id, value, is_set in _measures(record, meters):
            scope = (record.customer_id, record.resource_id, feature_id)
            self.ledger.record(
                scope,
                key,
                value=value,
                at=at,
                is_set=is_set,
                acked_at=acked_at,
                counted=counted if record.kind is RecordKind.USAGE else None,
            )

    def reported(self, scopes: Iterable[ScopeKey]) -> dict[ScopeKey, dict[str, list[Measure]]]:
        """What the host reported of each scope that its outbox still holds (pending, or sent
        within the hour), by feature: what reconciliation dates offline decisions by. A scope
        the outbox cannot tell of is left out (its usage then is not known)."""
        meters, wanted = self._meters(), set(scopes)
        found: dict[ScopeKey, dict[str, list[Measure]]] = {}
        try:
            if self._shared is None:
                held = [r for r, _ in self.outbox.unsettled()]
            else:
                held = [h.record for s in wanted for h in self._shared.held_of(*s)]
        except StoreError:
            return found
        for scope in wanted:
            found[scope] = {}
        for record in held:
            by_feature = found.get((record.customer_id, record.resource_id))
            if by_feature is None:
                continue
            for feature_id, value, is_set in _measures(record, meters):
                by_feature.setdefault(feature_id, []).append((record.stamped_at, value, is_set))
        return found

    def _meters(self) -> dict[str, list[tuple[str, Meter]]]:
        """The policy's meters by event name (rebuilt when the policy changes)."""
        policy = self._policy.current
        version, index = self._meters_of
        if version != policy.version:
            index = {}
            for feature_id, meter in policy.meters.items():
                index.setdefault(meter.event, []).append((feature_id, meter))
            self._meters_of = (policy.version, index)
            if self._shared is not None:  # the outbox indexes these events by customer
                self._shared.counted_events = frozenset(index)
        return index


def _measures(
    record: UsageRecord, meters: dict[str, list[tuple[str, Meter]]]
) -> Iterator[tuple[str, float, bool]]:
    """The features a record counts for, with its value and whether it is a ``SET``: a usage
    record its own feature; an event every feature a meter maps it to."""
    if record.kind is RecordKind.USAGE:
        yield record.name, record.value, record.update_behavior == "SET"
        return
    for feature_id, meter in meters.get(record.name, ()):
        if meter.aggregate == "count":
            yield feature_id, 1.0, False
            continue
        raw = record.dimensions.get(meter.field or "")
        if not isinstance(raw, bool) and isinstance(raw, int | float):
            yield feature_id, float(raw), False
