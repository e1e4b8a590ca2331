"""Pure reconciliation: which offline decisions does fresh data contradict?

While Stigg was unreachable, checks were answered from stale snapshots and
the policy. Once fresh snapshots are in, each journaled decision is judged
again; disagreements go into a :class:`ReconcileReport` for the operator
(e.g. access granted to a customer who ended the outage over their limit).
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Iterable, Mapping, Sequence

import attrs

from stigg_cache.core import engine, walk
from stigg_cache.core.engine import CheckKind, CheckRequest
from stigg_cache.core.ledger import LocalUsage
from stigg_cache.core.terms import ScopeKey
from stigg_cache.models import AnyEntitlement, Decision, FeatureEntitlement, Snapshot, Source

# Kinds of offline decision kept for the report (customer, feature, request, tier, answer
# and the usage it counted: counted with their first and last time), and the characters
# of their ids and requested values together (a kind may hold 100 values of 1,000
# characters: the count alone would let an outage hold gigabytes); past either, decisions
# are counted as uncovered.
DEFAULT_JOURNAL_SIZE = 100_000
DEFAULT_JOURNAL_CHARS = 8_000_000


@attrs.frozen
class OfflineDecision:
    """Checks answered alike without fresh data: one request, one tier, one answer, counting
    one usage (``used``, ``None`` for an answer without usage). Checks that counted other
    usage are other kinds: each is judged with the usage Stigg counted when it was made."""

    request: CheckRequest
    source: Source
    has_access: bool
    count: int = 1
    first_at: float = 0.0
    last_at: float = 0.0
    used: float | None = None


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


_Kind = tuple[CheckRequest, Source, bool, float | None]  # request, tier, answer, usage


class DecisionJournal:
    """Offline decisions, counted by kind within a bound; thread-safe."""

    def __init__(
        self, size: int = DEFAULT_JOURNAL_SIZE, chars: int = DEFAULT_JOURNAL_CHARS
    ) -> None:
        self._size = size
        self._chars = self._chars_left = chars
        self._kinds: dict[_Kind, list[float]] = {}  # count, first, last
        self._uncovered = 0
        self._held_kinds = self._held_chars = 0  # taken, still in memory (:meth:`release`)
        self._lock = threading.Lock()

    def record(
        self,
        at: float,
        request: CheckRequest,
        source: Source,
        has_access: bool,
        used: float | None = None,
    ) -> None:
        """Count one offline decision made at ``at`` (wall time), counting ``used``."""
        key = (request, source, has_access, used)
        with self._lock:
            kind = self._kinds.get(key)
            if kind is not None:
                kind[0] += 1
                kind[2] = at
            elif self._room(request):
                self._kinds[key] = [1, at, at]
                self._chars_left -= held_chars(request)
            else:
                self._uncovered += 1

    def add(self, decision: OfflineDecision) -> None:
        """Count alike decisions at once (taken back from the host's journal, or not yet
        added to it)."""
        key = (decision.request, decision.source, decision.has_access, decision.used)
        with self._lock:
            kind = self._kinds.get(key)
            if kind is not None:
                kind[0] += decision.count
                kind[1] = min(kind[1], decision.first_at)
                kind[2] = max(kind[2], decision.last_at)
            elif self._room(decision.request):
                self._kinds[key] = [decision.count, decision.first_at, decision.last_at]
                self._chars_left -= held_chars(decision.request)
            else:
                self._uncovered += decision.count

    def add_uncovered(self, count: int) -> None:
        """Decisions a bound kept out elsewhere: counted as not covered."""
        with self._lock:
            self._uncovered += count

    @property
    def empty(self) -> bool:
        """Whether nothing is held (no kind, nothing uncovered)."""
        return not self._kinds and not self._uncovered

    def _room(self, request: CheckRequest) -> bool:
        """Whether a new kind fits the bound (with what is taken but held); under the lock."""
        kinds = len(self._kinds) + self._held_kinds
        return kinds < self._size and held_chars(request) <= self._chars_left

    def take(self, *, hold: bool = False) -> tuple[list[OfflineDecision], int]:
        """Every kind so far, most recent last, and how many decisions were not covered;
        the journal empties. ``hold``: what is taken still counts against the bound (it is
        in memory still, on its way elsewhere) until :meth:`release`."""
        with self._lock:
            kinds, self._kinds = self._kinds, {}
            uncovered, self._uncovered = self._uncovered, 0
            if hold:
                self._held_kinds += len(kinds)
                self._held_chars += sum(held_chars(request) for request, *_ in kinds)
            self._chars_left = self._chars - self._held_chars
        taken = [
            OfflineDecision(request, source, has_access, int(count), first, last, used)
            for (request, source, has_access, used), (count, first, last) in kinds.items()
        ]
        taken.sort(key=lambda decision: decision.last_at)
        return taken, uncovered

    def release(self, decisions: Sequence[OfflineDecision]) -> None:
        """Held decisions gone from memory (see :meth:`take`): their room is free again."""
        held = sum(held_chars(decision.request) for decision in decisions)
        with self._lock:
            self._held_kinds -= len(decisions)
            self._held_chars -= held
            self._chars_left += held


JournalRow = tuple[str, int, float, float, int]
"""A kind of offline decision as the host's journal keeps it: its key (:func:`kind_key`),
count, first and last time, and the characters it holds (the journal's bound)."""


def journal_row(decision: OfflineDecision) -> JournalRow:
    """A kind of decision as the host's journal keeps it."""
    request = decision.request
    fields = [
        request.kind.value,
        request.customer_id,
        request.feature_id,
        request.resource_id,
        request.requested_usage,
        list(request.requested_values),
        decision.source.value,
        decision.has_access,
    ]
    if decision.used is not None:  # a key without it: as the versions before kept it
        fields.append(decision.used)
    key = json.dumps(fields, separators=(",", ":"))
    return key, decision.count, decision.first_at, decision.last_at, held_chars(request)


def from_journal_row(row: JournalRow) -> OfflineDecision | None:
    """A kind of decision read back from the host's journal (one an earlier version wrote
    counts no usage); ``None`` if it does not parse (a later version's, or damaged)."""
    key, count, first_at, last_at, _ = row
    try:
        kind, customer, feature, resource, usage, values, source, granted, *rest = json.loads(key)
        (used,) = rest or [None]
        request = CheckRequest(
            CheckKind(kind),
            str(customer),
            str(feature),
            None if resource is None else str(resource),
            None if usage is None else float(usage),
            tuple(str(v) for v in values),
        )
        return OfflineDecision(
            request,
            Source(source),
            bool(granted),
            int(count),
            float(first_at),
            float(last_at),
            None if used is None else float(used),
        )
    except (ValueError, TypeError, RecursionError):
        return None


def held_chars(request: CheckRequest) -> int:
    """What a kind of decision holds beyond its fixed size: its ids and requested values."""
    ids = len(request.customer_id) + len(request.feature_id) + len(request.resource_id or "")
    return ids + sum(map(len, request.requested_values))


Measure = tuple[float, float, bool]
"""Usage this host reported for a feature: (wall time of its stamp, value, whether a ``SET``)."""
Reported = Mapping[ScopeKey, Mapping[str, Sequence[Measure]]]
"""By scope, by feature: what the host reported (a scope missing: not known)."""


def usage_then(
    entitlement: FeatureEntitlement, measures: Sequence[Measure] | None, at: float, now_wall: float
) -> float | None:
    """The usage Stigg counted at ``at``: what it counts now, less what this host reported at
    or after ``at`` in the current period. ``None`` when that cannot be known: the decision
    fell in an earlier period, a ``SET`` came after it, or the host's reports are unknown."""
    start = entitlement.usage_period_start
    if measures is None or (start is not None and at < start.timestamp()):
        return None
    since = start.timestamp() if start is not None else -math.inf
    after = [m for m in measures if m[0] >= at and m[0] >= since]
    if any(is_set for _, _, is_set in after):
        return None
    return max(0.0, engine.usage_in_period(entitlement, now_wall) - sum(v for _, v, _ in after))


@attrs.frozen
class StiggThen:
    """What Stigg would have answered an offline decision when it was made.

    ``used``: the usage it was judged with, when usage decided it (``None``: usage plays
    no part). ``usage_known``: false when that usage cannot be dated back to the decision
    (judged with none: only what does not depend on usage can contradict it).
    """

    answer: AnyEntitlement
    used: float | None = None
    usage_known: bool = True


def stigg_then(
    entry: OfflineDecision, snapshot: Snapshot, reported: Reported, now_wall: float
) -> StiggThen:
    """Stigg's answer to an offline decision at its time: its terms now (granted, limit, soft
    limit, subscription), with the usage reported before the decision. A grant is judged at
    its last time (the most usage), a denial at its first (the least)."""
    request = entry.request
    scope = (request.customer_id, request.resource_id)
    feature = snapshot.entitlements.get(request.feature_id)
    if snapshot.access_denied_reason or feature is None or not engine.uses_usage(request, feature):
        return StiggThen(walk.verdict(request, snapshot, now_wall))
    at = entry.last_at if entry.has_access else entry.first_at
    measures = reported[scope].get(request.feature_id, ()) if scope in reported else None
    used = usage_then(feature, measures, at, now_wall)
    decision = Decision(Source.LIVE, 0.0, stale=False)
    local = LocalUsage(0.0, absolute=0.0 if used is None else used)
    answer = engine.from_snapshot(request, snapshot, decision, now_wall, local)
    return StiggThen(answer, used, usage_known=used is not None)


def _explain(entry: OfflineDecision, then: StiggThen) -> str | None:
    stigg = then.answer
    if stigg.has_access == entry.has_access or (not entry.has_access and not then.usage_known):
        return None  # a denial on usage that cannot be dated back is not contradicted
    usage = ""
    limit = getattr(stigg, "usage_limit", None)
    if then.used is not None and limit is not None:
        asked = f", {engine.requested(entry.request):g} requested" if entry.has_access else ""
        usage = f" ({then.used:g} of {limit:g} used{asked})"
    if entry.has_access:
        why = stigg.access_denied_reason or "not granted"  # a feature held but not granted
        on_usage = why == "RequestedUsageExceedingLimit"  # else the usage is beside the point
        return f"granted offline, but Stigg would have denied it: {why}{usage if on_usage else ''}"
    return f"denied offline, but Stigg would have granted it{usage}"


def judge_offline(
    entries: Iterable[OfflineDecision],
    fresh: Mapping[ScopeKey, Snapshot],
    *,
    now_wall: float,
    reported: Reported,
) -> list[Contradiction]:
    """The offline decisions that fresh snapshots contradict: each judged against what Stigg
    would have answered when it was made (:func:`stigg_then`)."""
    found: list[Contradiction] = []
    for entry in entries:
        request = entry.request
        snapshot = fresh.get((request.customer_id, request.resource_id))
        if snapshot is None:
            continue
        then = stigg_then(entry, snapshot, reported, now_wall)
        explanation = _explain(entry, then)
        if explanation is not None:
            found.append(
                Contradiction(
                    request.customer_id,
                    request.resource_id,
                    request.feature_id,
                    entry.first_at,
                    entry.source,
                    entry.has_access,
                    then.answer.has_access,
                    explanation,
                    entry.count,
                    entry.last_at,
                )
            )
    return found
