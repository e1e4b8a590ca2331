"""The outbox protocol: durable, FIFO, leased usage records.

An outbox is claim -> send -> acknowledge. A record is durable when
``enqueue`` returns; a claimed batch is leased to one sender until its lease
runs out, so a sender that dies mid-send loses nothing: the batch is claimed
again after the lease and re-sent with the same idempotency keys and stamps,
which Stigg deduplicates.

Failure rules: every method raises :class:`~stigg_cache.errors.StoreError`
when its storage fails. ``enqueue`` is all-or-nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Protocol, runtime_checkable

import attrs

from stigg_cache.core.ledger import DEFAULT_KEEP_ACKED_S
from stigg_cache.core.pacing import RateBucket
from stigg_cache.core.reconcile import JournalRow
from stigg_cache.core.share import HeadroomShare
from stigg_cache.outbox.records import Receipt, RecordKind, UsageRecord

KEEP_SENT_S = DEFAULT_KEEP_ACKED_S
"""Sent records answer duplicate enqueues and count as local usage this long: as long as
a process's ledger counts an acknowledged record, so every process counts the same."""
CLOCK_STEP_S = 60.0
"""A lease or retry set more than this after a claim's "now" means the wall clock stepped
back since, and the record is sendable again. Less is no step: a sibling whose clock runs a
little ahead, or this claim's "now" read before it waited for the outbox's lock (taking
those for steps sent records twice under four busy workers)."""


@attrs.frozen
class Claimed:
    """A record leased to a sender."""

    id: int
    record: UsageRecord
    attempts: int


@attrs.frozen
class DeadLetter:
    """A record Stigg refused, or that aged past the 7-day dedup window."""

    id: int
    record: UsageRecord
    reason: str
    dead_at: float
    attempts: int


@attrs.frozen
class OutboxStats:
    """Depth and age of what waits to be sent."""

    pending: int
    leased: int
    sent_unsettled: int
    dead_letters: int
    oldest_pending_at: float | None
    problem: str | None = None  # e.g. "redis unreachable: 12 records wait in the local outbox"


@attrs.frozen
class Held:
    """A record an outbox holds (pending, or sent and kept for a while)."""

    record: UsageRecord
    acked_at: float | None = None  # when Stigg acknowledged it; None: not yet
    counted: float | None = None  # the feature's usage Stigg answered once it counted it


@attrs.frozen
class UsageChanges:
    """What moved local usage in an outbox after some sequence number.

    Attributes:
        cursor: the sequence number to ask from next time.
        held: records added or acknowledged since.
        dead: records moved to the dead letters since (customer id, idempotency key):
            they no longer count.
        share: set when the outbox could not show every process's usage (a fleet's
            outbox unreachable): the consumption may spend only this share of the headroom.
    """

    cursor: int
    held: list[Held]
    dead: list[tuple[str, str]]
    share: HeadroomShare | None = None


@runtime_checkable
class Outbox(Protocol):
    """Where usage waits until Stigg has it."""

    def enqueue(self, records: Sequence[UsageRecord], now: float) -> list[Receipt]:
        """Make records durable, all or none; a repeated key with the same payload is a duplicate.

        Raises:
            ValueError: a key already enqueued with a different payload.
        """
        ...

    def claim(
        self, kind: RecordKind, limit: int, owner: str, *, now: float, lease_s: float
    ) -> list[Claimed]:
        """Lease up to ``limit`` of the oldest sendable records of ``kind`` to ``owner``."""
        ...

    def settle(
        self,
        *,
        sent: Sequence[int] = (),
        retry: Sequence[int] = (),
        dead: Sequence[int] = (),
        owner: str,
        now: float,
        retry_at: float = 0.0,
        reason: str = "",
        counted: Mapping[int, float] | None = None,
    ) -> None:
        """Record outcomes: ``sent`` acknowledged, ``retry`` released until ``retry_at``,
        ``dead`` moved to the dead letters with ``reason``. ``counted``: by id, what Stigg
        answered sent usage with (:attr:`Held.counted`)."""
        ...

    def release(self, owner: str) -> int:
        """Give back every lease ``owner`` holds (a sender shutting down); returns how many."""
        ...

    def stats(self, now: float) -> OutboxStats:
        """Counts for ``status()``."""
        ...

    def unsettled(self) -> list[tuple[UsageRecord, float | None]]:
        """Pending records and recently sent ones with their ack time, oldest first
        (to rebuild local usage after a restart)."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


@runtime_checkable
class DeadLetterBox(Protocol):
    """Operator access to dead letters (``client.outbox``)."""

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """The oldest dead letters."""
        ...

    def requeue(self, ids: Sequence[int] | None = None) -> int:
        """Move dead letters (all when ``ids`` is None) back to the outbox; returns how many."""
        ...

    def purge(self, ids: Sequence[int] | None = None) -> int:
        """Delete dead letters for good; returns how many."""
        ...


@runtime_checkable
class SharedUsage(Protocol):
    """An outbox every process of a host (or fleet) reads local usage from (DESIGN §8).

    Each process keeps a ledger of local usage; with this protocol the ledger
    follows the outbox's changes, so usage reported, acknowledged or
    dead-lettered by any process counts the same in all of them, and a
    consumption can be judged and enqueued as one transaction. Outboxes
    without it count what this process reported.
    """

    counted_events: frozenset[str]
    """Event names whose records count as local usage (a meter maps them): with usage
    records, what :meth:`held_of` finds. Set by the client from its policy."""

    def cursor(self) -> int:
        """The sequence number of the latest change (a process starts following there)."""
        ...

    def held_of(self, customer_id: str, resource_id: str | None) -> list[Held]:
        """What of one customer (and resource) may still count: pending records, and sent
        ones with their acknowledgement while they are kept. Read when a process first
        needs that customer's usage: start-up reads nothing proportional to the outbox."""
        ...

    def changes(self, after: int) -> UsageChanges:
        """What moved local usage since ``after`` (``-1``: everything the outbox holds).

        Every record that can count as local usage (usage records, and events named in
        ``counted_events`` when enqueued); an event no meter counts may be left out.
        """
        ...

    def enqueue_if(
        self,
        records: Sequence[UsageRecord],
        now: float,
        *,
        after: int,
        admit: Callable[[UsageChanges], bool],
    ) -> list[Receipt] | None:
        """In one transaction: show ``admit`` the changes since ``after``; enqueue the
        records (all new keys) only if it returns true. ``None`` when refused.

        Raises:
            ValueError: a key already enqueued (a consumption's key must be new).
        """
        ...


@runtime_checkable
class SharedPacing(Protocol):
    """An outbox shared by a fleet also shares its rate budgets.

    After an outage every process drains at once; Stigg's limits hold for the
    account, so the flusher and reconciliation take their tokens from buckets
    the whole fleet shares. Outboxes without this pace each process alone.
    """

    def rate_bucket(self, name: str, rate: float, capacity: float) -> RateBucket:
        """The fleet's bucket called ``name`` (created with ``rate`` and ``capacity``)."""
        ...


@runtime_checkable
class SharedJournal(Protocol):
    """An outbox every process of a host shares also keeps the host's offline decisions.

    Each process counts its offline decisions in memory and adds them here now and
    then; a reconciliation, made by whichever process, takes them all. So a worker
    restarted during an outage, or a sibling that reconciles, reports every decision
    of the host once. Bounded as the local journal is. Faults follow the outbox's
    rules (``StoreError``): the caller keeps what it could not add, and tries again.
    """

    def journal_add(
        self, rows: Sequence[JournalRow], uncovered: int, *, size: int, chars: int
    ) -> None:
        """Count ``rows`` in (alike kinds summed, first and last times widened); a new kind
        past ``size`` kinds or ``chars`` characters, and ``uncovered``, count as not covered."""
        ...

    def journal_take(self) -> tuple[list[JournalRow], int]:
        """Every kind held and how many decisions were not covered; the journal empties, in
        the same transaction (two processes taking at once never both get one)."""
        ...
