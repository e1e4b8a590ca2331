"""Pure reconciliation: which offline decisions does fresh data contradict?

While Stigg was unreachable, checks were answered from stale snapshots and
the policy. Once fresh snapshots are in, each journaled decision is judged
again; disagreements go into a :class:`ReconcileReport` for the operator
(e.g. access granted to a customer who ended the outage over their limit).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping

import attrs

from stigg_cache.core.engine import CheckRequest, from_snapshot
from stigg_cache.models import AnyEntitlement, Decision, MeteredEntitlement, Snapshot, Source

DEFAULT_JOURNAL_SIZE = 10_000  # offline decisions kept for the report; the oldest go first


@attrs.frozen
class OfflineDecision:
    """A check answered without fresh data."""

    at: float
    request: CheckRequest
    source: Source
    has_access: bool


@attrs.frozen
class Contradiction:
    """An offline answer that fresh data disagrees with."""

    customer_id: str
    resource_id: str | None
    feature_id: str
    decided_at: float
    source: Source
    offline_has_access: bool
    fresh_has_access: bool
    explanation: str


@attrs.frozen
class ReconcileReport:
    """What reconciliation found after Stigg came back.

    Attributes:
        decisions_checked: journaled offline decisions judged against fresh data.
        decisions_dropped: offline decisions that fell out of the bounded journal.
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
        return sum(1 for c in self.contradictions if c.offline_has_access)

    @property
    def denied_but_granted(self) -> int:
        """Offline denials that fresh data would have granted (customer pain)."""
        return sum(1 for c in self.contradictions if not c.offline_has_access)


class DecisionJournal:
    """A bounded, thread-safe log of offline decisions (append is the hot path)."""

    def __init__(self, size: int = DEFAULT_JOURNAL_SIZE) -> None:
        self._entries: deque[OfflineDecision] = deque(maxlen=size)
        self.appended = 0

    def append(self, entry: OfflineDecision) -> None:
        """Record one offline decision (deque appends are atomic)."""
        self._entries.append(entry)
        self.appended += 1

    def take(self) -> tuple[list[OfflineDecision], int]:
        """Every entry so far and how many were dropped for space; the journal empties."""
        entries: list[OfflineDecision] = []
        while self._entries:
            entries.append(self._entries.popleft())
        dropped = max(0, self.appended - len(entries))
        self.appended = 0
        return entries, dropped


_JUDGE = Decision(Source.LIVE, 0.0, stale=False)


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
        verdict = from_snapshot(request, snapshot, _JUDGE, now_wall=now_wall)
        explanation = _explain(entry, verdict)
        if explanation is not None:
            found.append(
                Contradiction(
                    request.customer_id,
                    request.resource_id,
                    request.feature_id,
                    entry.at,
                    entry.source,
                    entry.has_access,
                    verdict.has_access,
                    explanation,
                )
            )
    return found
