"""Pure reconciliation: which offline decisions does fresh data contradict?

While Stigg was unreachable, checks were answered from stale snapshots and
the policy. Once fresh snapshots are in, each journaled decision is judged
again; disagreements go into a :class:`ReconcileReport` for the operator
(e.g. access granted to a customer who ended the outage over their limit).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping

import attrs

from stigg_cache.core import walk
from stigg_cache.core.engine import CheckRequest
from stigg_cache.models import AnyEntitlement, MeteredEntitlement, Snapshot, Source

# Kinds of offline decision kept for the report (customer, feature, request, tier and
# answer: counted with their first and last time), and the characters of their ids and
# requested values together (a kind may hold 100 values of 1,000 characters: the count
# alone would let an outage hold gigabytes); past either, decisions are counted as uncovered.
DEFAULT_JOURNAL_SIZE = 100_000
DEFAULT_JOURNAL_CHARS = 8_000_000


@attrs.frozen
class OfflineDecision:
    """Checks answered alike without fresh data: one request, one tier, one answer."""

    request: CheckRequest
    source: Source
    has_access: bool
    count: int = 1
    first_at: float = 0.0
    last_at: float = 0.0


@attrs.frozen
class Contradiction:
    """Offline answers that fresh data disagrees with (``count`` of them, alike)."""

    customer_id: str
    resource_id: str | None
    feature_id: str
    decided_at: float  # the first of them
    source: Source
    offline_has_access: bool
    fresh_has_access: bool
    explanation: str
    count: int = 1
    last_decided_at: float | None = None


@attrs.frozen
class ReconcileReport:
    """What reconciliation found after Stigg came back.

    Attributes:
        decisions_checked: offline decisions judged against fresh data (every one the
            journal covers: alike decisions are counted together).
        decisions_dropped: offline decisions the bounded journal could not cover.
        customers_refreshed / customers_failed: snapshot refreshes after reconnect.
        outbox_drained: whether every buffered record reached Stigg.
    """

    started_at: float
    finished_at: float
    decisions_checked: int
    decisions_dropped: int
    customers_refreshed: int
    customers_failed: int
    outbox_drained: bool
    outbox_pending: int
    contradictions: tuple[Contradiction, ...]

    @property
    def granted_but_denied(self) -> int:
        """Offline grants that fresh data would have denied (revenue risk)."""
        return sum(c.count for c in self.contradictions if c.offline_has_access)

    @property
    def denied_but_granted(self) -> int:
        """Offline denials that fresh data would have granted (customer pain)."""
        return sum(c.count for c in self.contradictions if not c.offline_has_access)


class DecisionJournal:
    """Offline decisions, counted by kind within a bound; thread-safe."""

    def __init__(
        self, size: int = DEFAULT_JOURNAL_SIZE, chars: int = DEFAULT_JOURNAL_CHARS
    ) -> None:
        self._size = size
        self._chars = self._chars_left = chars
        self._kinds: dict[tuple[CheckRequest, Source, bool], list[float]] = {}  # count, first, last
        self._uncovered = 0
        self._lock = threading.Lock()

    def renew_lock(self) -> None:
        """A lock of this process's own (after ``os.fork``)."""
        self._lock = threading.Lock()

    def record(self, at: float, request: CheckRequest, source: Source, has_access: bool) -> None:
        """Count one offline decision made at ``at`` (wall time)."""
        key = (request, source, has_access)
        with self._lock:
            kind = self._kinds.get(key)
            if kind is not None:
                kind[0] += 1
                kind[2] = at
            elif len(self._kinds) < self._size and _chars(request) <= self._chars_left:
                self._kinds[key] = [1, at, at]
                self._chars_left -= _chars(request)
            else:
                self._uncovered += 1

    def take(self) -> tuple[list[OfflineDecision], int]:
        """Every kind so far, most recent last, and how many decisions were not covered;
        the journal empties."""
        with self._lock:
            kinds, self._kinds = self._kinds, {}
            uncovered, self._uncovered = self._uncovered, 0
            self._chars_left = self._chars
        taken = [
            OfflineDecision(request, source, has_access, int(count), first, last)
            for (request, source, has_access), (count, first, last) in kinds.items()
        ]
        taken.sort(key=lambda decision: decision.last_at)
        return taken, uncovered


def _chars(request: CheckRequest) -> int:
    """What a kind of decision holds beyond its fixed size: its ids and requested values."""
    ids = len(request.customer_id) + len(request.feature_id) + len(request.resource_id or "")
    return ids + sum(map(len, request.requested_values))


def _explain(entry: OfflineDecision, verdict: AnyEntitlement) -> str | None:
    if isinstance(verdict, MeteredEntitlement):
        limit = verdict.usage_limit
        if entry.has_access and limit is not None and not verdict.is_unlimited:
            if verdict.current_usage > limit:
                return (
                    "granted offline, but the customer ended over the limit "
                    f"({verdict.current_usage:g} of {limit:g})"
                )
            return None
        if not entry.has_access and verdict.has_access:
            return "denied offline, but the customer was within the limit"
        return None
    if verdict.has_access == entry.has_access:
        return None
    return f"Stigg now says {'granted' if verdict.has_access else verdict.access_denied_reason}"


def judge_offline(
    entries: Iterable[OfflineDecision],
    fresh: Mapping[tuple[str, str | None], Snapshot],
    *,
    now_wall: float,
) -> list[Contradiction]:
    """The offline decisions that fresh snapshots contradict."""
    found: list[Contradiction] = []
    for entry in entries:
        request = entry.request
        snapshot = fresh.get((request.customer_id, request.resource_id))
        if snapshot is None:
            continue
        verdict = walk.verdict(request, snapshot, now_wall)
        explanation = _explain(entry, verdict)
        if explanation is not None:
            found.append(
                Contradiction(
                    request.customer_id,
                    request.resource_id,
                    request.feature_id,
                    entry.first_at,
                    entry.source,
                    entry.has_access,
                    verdict.has_access,
                    explanation,
                    entry.count,
                    entry.last_at,
                )
            )
    return found
