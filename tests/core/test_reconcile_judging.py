"""How reconciliation judges an offline decision, as a data table (#29 items 5, 6).

An offline decision is contradicted when Stigg would have answered otherwise at
the moment it was made: Stigg's terms now (granted, limit, soft limit,
subscription), with the usage it counted then — its usage now less what the host
reported at or after the decision. A denial is contradicted only when that usage
can be known.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import attrs
import pytest

from stigg_cache.core.engine import CheckKind, CheckRequest
from stigg_cache.core.reconcile import DecisionJournal, Measure, OfflineDecision, judge_offline
from stigg_cache.models import FeatureEntitlement, Snapshot, Source

NOW = datetime(2030, 6, 15, tzinfo=UTC).timestamp()
DECIDED = NOW - 600  # the offline decision
START = datetime(2030, 6, 1, tzinfo=UTC)  # the usage period Stigg counts now


def _metered(limit: float, usage: float, **changes: Any) -> FeatureEntitlement:
    base = FeatureEntitlement(
        "api_calls",
        "NUMBER",
        is_granted=True,
        usage_limit=limit,
        current_usage=usage,
        reset_period="MONTH",
        usage_period_start=START,
        usage_period_end=START + timedelta(days=30),
    )
    return attrs.evolve(base, **changes)


HARD = _metered(10, 10)
FEATURE_REMOVED = Snapshot("c", None, {}, NOW)
ENDED = Snapshot("c", None, {}, NOW, access_denied_reason="NoActiveSubscription")
UNIT_USED: list[Measure] = [(DECIDED + 1, 1.0, False)]  # the unit granted, used and reported
SET_AFTER: list[Measure] = [(DECIDED + 1, 10.0, True)]
BEFORE: list[Measure] = [(DECIDED - 1, 1.0, False)]


@pytest.mark.parametrize(
    ("case", "fresh", "granted", "reported", "kind", "explanation"),
    [
        ("removed from the plan", FEATURE_REMOVED, True, [], CheckKind.METERED,
         "granted offline, but Stigg would have denied it: NoFeatureEntitlementInSubscription"),
        ("subscription ended", ENDED, True, [], CheckKind.METERED,
         "granted offline, but Stigg would have denied it: NoActiveSubscription"),
        ("held, no longer granted (no reason given)", _metered(10, 0, is_granted=False), True,
         [], CheckKind.METERED, "granted offline, but Stigg would have denied it: not granted"),
        ("soft limit, over it", _metered(10, 14, has_soft_limit=True), True, [],
         CheckKind.METERED, None),
        ("unlimited", _metered(10, 14, has_unlimited_usage=True), True, [], CheckKind.METERED,
         None),
        ("last unit granted, then used", HARD, True, UNIT_USED, CheckKind.GENERIC, None),
        ("at the limit before the grant", HARD, True, BEFORE, CheckKind.GENERIC,
         ("granted offline, but Stigg would have denied it: RequestedUsageExceedingLimit "
          "(10 of 10 used, 1 requested)")),
        ("denied at the limit, still at it", HARD, False, [],
         CheckKind.METERED, None),
        ("denied, Stigg reset the usage", _metered(10, 0), False, [], CheckKind.METERED,
         "denied offline, but Stigg would have granted it (0 of 10 used)"),
        ("denied, a SET came after: usage then unknown", _metered(10, 0), False, SET_AFTER,
         CheckKind.METERED, None),
        ("granted, a SET came after: judged without usage", _metered(10, 10), True, SET_AFTER,
         CheckKind.METERED, None),
        ("denied before this period began: usage then unknown",
         _metered(10, 0, usage_period_start=datetime.fromtimestamp(DECIDED + 5, UTC)), False,
         [], CheckKind.METERED, None),
    ],
)  # fmt: skip
def test_an_offline_decision_is_judged_against_what_stigg_would_have_answered_then(
    case: str,
    fresh: FeatureEntitlement | Snapshot,
    granted: bool,
    reported: list[Measure],
    kind: CheckKind,
    explanation: str | None,
) -> None:
    snapshot = (
        fresh if isinstance(fresh, Snapshot) else Snapshot("c", None, {"api_calls": fresh}, NOW)
    )
    decision = OfflineDecision(
        CheckRequest(kind, "c", "api_calls"), Source.POLICY, granted, 1, DECIDED, DECIDED
    )
    found = judge_offline(
        [decision],
        {("c", None): snapshot},
        now_wall=NOW,
        reported={("c", None): {"api_calls": reported}},
    )
    assert [c.explanation for c in found] == ([] if explanation is None else [explanation]), case


def test_usage_the_host_cannot_tell_of_never_contradicts_a_denial() -> None:
    decision = OfflineDecision(
        CheckRequest(CheckKind.METERED, "c", "api_calls"), Source.STALE, False, 1, DECIDED, DECIDED
    )
    fresh: dict[tuple[str, str | None], Snapshot] = {
        ("c", None): Snapshot("c", None, {"api_calls": _metered(10, 0)}, NOW)
    }
    assert judge_offline([decision], fresh, now_wall=NOW, reported={}) == []


def test_alike_consumptions_under_a_lowered_limit_are_judged_each_with_its_own_usage() -> None:
    """5 units consumed offline against limit 10, lowered to 3 during the outage: the 4th
    and 5th would have been denied then, the first three not (attack report F3)."""
    journal = DecisionJournal()
    request = CheckRequest(CheckKind.METERED, "c", "api_calls", requested_usage=1)
    reported: list[Measure] = []
    for n in range(5):  # each answered counting the units before it, each then reported
        journal.record(DECIDED + 10 * n, request, Source.STALE, True, used=float(n))
        reported.append((DECIDED + 10 * n + 1, 1.0, False))
    entries, uncovered = journal.take()
    assert (len(entries), uncovered) == (5, 0)
    fresh: dict[tuple[str, str | None], Snapshot] = {
        ("c", None): Snapshot("c", None, {"api_calls": _metered(3, 5)}, NOW)
    }
    found = judge_offline(
        entries, fresh, now_wall=NOW, reported={("c", None): {"api_calls": reported}}
    )
    assert sum(c.count for c in found) == 2
    assert [c.explanation for c in found] == [
        "granted offline, but Stigg would have denied it: RequestedUsageExceedingLimit"
        f" ({used} of 3 used, 1 requested)"
        for used in (3, 4)
    ]
