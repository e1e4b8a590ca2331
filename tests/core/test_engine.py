"""The pure decision rules, as data tables."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from stigg_cache.core.engine import (
    CheckKind,
    CheckRequest,
    Freshness,
    from_grant,
    from_snapshot,
    judge,
    judge_all,
)
from stigg_cache.core.ledger import LocalUsage
from stigg_cache.models import Decision, FeatureEntitlement, MeteredEntitlement, Snapshot, Source
from stigg_cache.policy import FallbackPolicy, FeaturePolicy, Grant, Rule, Staleness

BUDGET = Staleness(fresh_for_s=60, max_staleness_s=3600)
DECISION = Decision(Source.CACHE, 1.0, stale=False)
NOW = datetime(2030, 6, 1, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("age_s", "past_valid_until", "in_future", "expected"),
    [
        (0, False, False, Freshness.FRESH),
        (60, False, False, Freshness.FRESH),
        (60.01, False, False, Freshness.STALE),
        (10, True, False, Freshness.STALE),
        (0, False, True, Freshness.STALE),
        (3600, False, False, Freshness.STALE),
        (3600.01, False, False, Freshness.EXPIRED),
        (7200, True, True, Freshness.EXPIRED),
    ],
)
def test_freshness_rules(
    age_s: float, past_valid_until: bool, in_future: bool, expected: Freshness
) -> None:
    assert (
        judge(age_s, BUDGET, past_valid_until=past_valid_until, dated_in_future=in_future)
        is expected
    )


def _snapshot(*entitlements: FeatureEntitlement, denied: str | None = None) -> Snapshot:
    return Snapshot(
        "c",
        None,
        {e.feature_id: e for e in entitlements},
        0.0,
        access_denied_reason=denied,  # type: ignore[arg-type]
    )


METER = FeatureEntitlement(
    "calls",
    "NUMBER",
    is_granted=True,
    usage_limit=10,
    current_usage=8,
    usage_period_end=datetime(2030, 7, 1, tzinfo=UTC),
)
ROLLED = FeatureEntitlement(
    "calls",
    "NUMBER",
    is_granted=True,
    usage_limit=10,
    current_usage=10,
    usage_period_end=datetime(2030, 5, 1, tzinfo=UTC),
)


@pytest.mark.parametrize(
    ("entitlement", "usage", "local", "has_access", "reason", "current"),
    [
        (METER, 2, 0, True, None, 8),
        (METER, 3, 0, False, "RequestedUsageExceedingLimit", 8),
        (METER, 1, 2, False, "RequestedUsageExceedingLimit", 10),
        (METER, None, 1, True, None, 9),
        (ROLLED, 10, 0, True, None, 0),
        (
            FeatureEntitlement(
                "calls", "NUMBER", True, usage_limit=1, current_usage=5, has_unlimited_usage=True
            ),
            9,
            0,
            True,
            None,
            5,
        ),
        (
            FeatureEntitlement(
                "calls", "NUMBER", True, usage_limit=1, current_usage=5, has_soft_limit=True
            ),
            9,
            0,
            True,
            None,
            5,
        ),
        (
            FeatureEntitlement(
                "calls", "NUMBER", False, access_denied_reason="Revoked", current_usage=0
            ),
            1,
            0,
            False,
            "Revoked",
            0,
        ),
    ],
)
def test_metered_rules(
    entitlement: FeatureEntitlement,
    usage: float | None,
    local: float,
    has_access: bool,
    reason: str | None,
    current: float,
) -> None:
    request = CheckRequest(CheckKind.METERED, "c", "calls", requested_usage=usage)
    extra = LocalUsage(local) if local else None
    result = from_snapshot(request, _snapshot(entitlement), DECISION, now_wall=NOW, local=extra)
    assert (result.has_access, result.access_denied_reason) == (has_access, reason)
    assert isinstance(result, MeteredEntitlement)
    assert result.current_usage == current


def test_customer_level_denial_wins_over_entitlements() -> None:
    request = CheckRequest(CheckKind.BOOLEAN, "c", "sso")
    result = from_snapshot(
        request,
        _snapshot(FeatureEntitlement("sso", "BOOLEAN", True), denied="NoActiveSubscription"),
        DECISION,
        now_wall=NOW,
    )
    assert (result.has_access, result.access_denied_reason) == (False, "NoActiveSubscription")


@pytest.mark.parametrize(
    ("kind", "grant", "usage", "local", "has_access"),
    [
        (CheckKind.BOOLEAN, Grant(has_access=True), None, 0, True),
        (CheckKind.BOOLEAN, Grant(has_access=False), None, 0, False),
        (CheckKind.METERED, Grant(has_access=True, usage_limit=5), 5, 0, True),
        (CheckKind.METERED, Grant(has_access=True, usage_limit=5), 2, 4, False),
        (CheckKind.METERED, Grant(has_access=True, usage_limit=5, is_unlimited=True), 9, 9, True),
        (CheckKind.NUMERIC, Grant(has_access=True, value=7), None, 0, True),
    ],
)
def test_fallback_grant_rules(
    kind: CheckKind, grant: Grant, usage: float | None, local: float, has_access: bool
) -> None:
    request = CheckRequest(kind, "c", "f", requested_usage=usage)
    assert from_grant(request, grant, DECISION, local=LocalUsage(local)).has_access is has_access


def test_enum_fallback_checks_requested_values() -> None:
    request = CheckRequest(CheckKind.ENUM, "c", "m", requested_values=("x",))
    denied = from_grant(request, Grant(has_access=True, enum_values=("a",)), DECISION)
    assert (denied.has_access, denied.access_denied_reason) == (False, "RequestedValuesMismatch")


POLICY = FallbackPolicy(
    features={"sso": FeaturePolicy(fallback=Grant(has_access=False))},
    rules=(
        Rule("vip", {"*": Grant(has_access=True)}, customers=("acme", "ent-*")),
        Rule("eu-resources", {"sso": Grant(has_access=True)}, resources=("eu-*",)),
        Rule("pro-plan", {"sso": Grant(has_access=True)}, plans=("plan-pro",)),
    ),
    default=Grant(has_access=False),
)


@pytest.mark.parametrize(
    ("customer", "resource", "plans", "feature", "source", "rule", "has_access"),
    [
        ("acme", None, (), "sso", Source.POLICY, "vip", True),
        ("ent-42", None, (), "anything", Source.POLICY, "vip", True),
        ("entity", None, (), "sso", Source.DEFAULT, "features.sso", False),
        ("x", "eu-1", (), "sso", Source.POLICY, "eu-resources", True),
        ("x", "us-1", (), "sso", Source.DEFAULT, "features.sso", False),
        ("x", None, ("plan-pro",), "sso", Source.POLICY, "pro-plan", True),
        ("x", None, (), "reports", Source.DEFAULT, "default", False),
    ],
)
def test_policy_resolution_order(
    customer: str,
    resource: str | None,
    plans: tuple[str, ...],
    feature: str,
    source: Source,
    rule: str,
    has_access: bool,
) -> None:
    resolution = POLICY.resolve(customer, resource, feature, plans)
    assert (resolution.source, resolution.rule, resolution.grant.has_access) == (
        source,
        rule,
        has_access,
    )


def test_builtin_policy_allows_with_no_rule() -> None:
    resolution = FallbackPolicy().resolve("c", None, "f")
    assert (resolution.source, resolution.rule, resolution.grant.has_access) == (
        Source.DEFAULT,
        None,
        True,
    )


def test_a_whole_snapshot_is_as_fresh_as_its_least_fresh_feature() -> None:
    now = datetime(2026, 12, 1, tzinfo=UTC).timestamp()
    passed = datetime(2026, 11, 30, tzinfo=UTC)
    features = {
        "sso": FeatureEntitlement("sso", "BOOLEAN", True),
        "audit": FeatureEntitlement("audit", "BOOLEAN", True, valid_until=passed),
    }
    short = {"sso": Staleness(fresh_for_s=60, max_staleness_s=600)}
    overall = Staleness(fresh_for_s=60, max_staleness_s=86_400)

    def judged(age: float, *, only: tuple[str, ...] = ("sso", "audit")) -> object:
        chosen = {f: features[f] for f in only}
        return judge_all(
            age, chosen, lambda f: short.get(f, overall), overall, now_wall=now,
            dated_in_future=False,
        )  # fmt: skip

    assert judged(10, only=("sso",)) == (Freshness.FRESH, frozenset())
    assert judged(10) == (Freshness.STALE, frozenset())  # audit's validUntil passed
    assert judged(1_200) == (Freshness.EXPIRED, frozenset({"sso"}))  # sso's own budget
    assert judged(1_200, only=()) == (Freshness.STALE, frozenset())  # none: overall's
    assert judged(90_000, only=()) == (Freshness.EXPIRED, frozenset())
