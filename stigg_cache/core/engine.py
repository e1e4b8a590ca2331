"""Pure decision rules: how fresh a snapshot is, and what a check answers.

Everything here is a function of its arguments (snapshot, policy budget,
``now``): the client does the I/O and calls in.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, assert_never

import attrs

from stigg_cache.core.ledger import LocalUsage
from stigg_cache.core.terms import Grant, Staleness
from stigg_cache.models import (
    AnyEntitlement,
    BooleanEntitlement,
    Decision,
    Entitlement,
    EnumEntitlement,
    FeatureEntitlement,
    MeteredEntitlement,
    NumericEntitlement,
    Snapshot,
)

FUTURE_SKEW_S = 5.0  # a snapshot dated further ahead than this is not believed fresh
# Stigg's SDKs check one unit when none is given: at 10 of 10 a hard limit denies, in every tier
DEFAULT_REQUESTED_USAGE = 1.0
MIN_REFRESH_S = 5.0  # a customer is asked for again at most this often while stale
USAGE_DENIAL = "RequestedUsageExceedingLimit"  # Stigg's reason for a denial by usage
USAGE_UNKNOWN = "Unknown"  # denied: part of the host's usage could not be read


class CheckKind(enum.Enum):
    """Which entitlement getter the caller used."""

    BOOLEAN = "boolean"
    NUMERIC = "numeric"
    METERED = "metered"
    ENUM = "enum"
    GENERIC = "generic"


@attrs.frozen
class CheckRequest:
    """One validated entitlement check."""

    kind: CheckKind
    customer_id: str
    feature_id: str
    resource_id: str | None = None
    requested_usage: float | None = None
    requested_values: tuple[str, ...] = ()


class Freshness(enum.Enum):
    """How a snapshot may be used for one feature.

    FRESH: answer from it (CACHE). STALE: answer from it and refresh in the
    background. EXPIRED: older than ``max_staleness``: do not trust it.
    """

    FRESH = "fresh"
    STALE = "stale"
    EXPIRED = "expired"


def judge(
    age_s: float, budget: Staleness, *, past_valid_until: bool, dated_in_future: bool
) -> Freshness:
    """Classify a snapshot's age against a feature's budget.

    ``validUntil`` in the past and a fetch time in the future (beyond skew)
    both end freshness early, but neither makes the data unusable while it is
    within ``max_staleness``.
    """
    if age_s > budget.max_staleness_s:
        return Freshness.EXPIRED
    if age_s <= budget.fresh_for_s and not past_valid_until and not dated_in_future:
        return Freshness.FRESH
    return Freshness.STALE


_WORSE = {Freshness.FRESH: 0, Freshness.STALE: 1, Freshness.EXPIRED: 2}


def judge_all(
    age_s: float,
    entitlements: Mapping[str, FeatureEntitlement],
    budget_of: Callable[[str], Staleness],
    overall: Staleness,
    *,
    now_wall: float,
    dated_in_future: bool,
) -> tuple[Freshness, frozenset[str]]:
    """A whole snapshot judged as each of its features would be by a check of its own:
    the worst of their freshness (``overall``'s for one with no features), and the
    features past their own ``max_staleness`` (a check of one answers without them)."""
    judged = {
        feature_id: judge(
            age_s,
            budget_of(feature_id),
            past_valid_until=valid_until_passed(entitlement, now_wall),
            dated_in_future=dated_in_future,
        )
        for feature_id, entitlement in entitlements.items()
    }
    if not judged:
        whole = judge(age_s, overall, past_valid_until=False, dated_in_future=dated_in_future)
        return whole, frozenset()
    expired = frozenset(f for f, freshness in judged.items() if freshness is Freshness.EXPIRED)
    return max(judged.values(), key=_WORSE.__getitem__), expired


def refresh_due(age_s: float, budget: Staleness) -> bool:
    """Whether a snapshot past its freshness is old enough to ask Stigg for again.

    A feature whose ``validUntil`` has already passed when it arrives is stale at
    once: refreshing it on every check would ask Stigg on every check. A snapshot
    is asked for again once it is ``MIN_REFRESH_S`` old (or its ``fresh_for_s``,
    if shorter): a customer is refreshed at most once per that interval.
    """
    return age_s >= min(MIN_REFRESH_S, budget.fresh_for_s)


def period_ended(entitlement: FeatureEntitlement, now_wall: float) -> bool:
    """Whether the usage period Stigg counted has rolled over since the fetch."""
    end = entitlement.usage_period_end
    return end is not None and end.timestamp() <= now_wall


def usage_in_period(entitlement: FeatureEntitlement, now_wall: float) -> float:
    """The usage Stigg counted in the current period (0 once the period it counted ended)."""
    if period_ended(entitlement, now_wall):
        return 0.0
    return entitlement.current_usage or 0.0


def requested(request: CheckRequest) -> float:
    """The units a check asks for: its ``requested_usage``, else one."""
    if request.requested_usage is None:
        return DEFAULT_REQUESTED_USAGE
    return request.requested_usage


def _within_limit(
    limit: float | None, unlimited: bool, used: float, requested: float, *, complete: bool = True
) -> bool:
    return unlimited or limit is None or (complete and used + requested <= limit)


@attrs.frozen
class UsageTerms:
    """What a usage-dependent answer needs to be judged again with local usage."""

    granted: bool
    reason: str | None
    base_usage: float
    usage_limit: float | None
    open_ended: bool  # unlimited or soft limit: usage never denies

    def judge(
        self, used: float, requested: float, *, complete: bool = True
    ) -> tuple[bool, str | None]:
        """Access and denial reason for ``requested`` more units on top of ``used``
        (``complete=False``: ``used`` lacks usage that could not be read: no grant on it)."""
        if not self.granted:
            return False, self.reason
        limit = self.usage_limit  # inlined: a warm metered check judges on every call
        if self.open_ended or limit is None or (complete and used + requested <= limit):
            return True, None
        return False, USAGE_DENIAL if complete else USAGE_UNKNOWN


def _effective(request: CheckRequest, snapshot: Snapshot) -> FeatureEntitlement:
    entitlement = snapshot.entitlements.get(request.feature_id)
    if snapshot.access_denied_reason is not None:
        return attrs.evolve(
            entitlement or FeatureEntitlement(request.feature_id, None, is_granted=False),
            is_granted=False,
            access_denied_reason=snapshot.access_denied_reason,
        )
    if entitlement is None:
        return FeatureEntitlement(
            request.feature_id,
            None,
            is_granted=False,
            access_denied_reason="NoFeatureEntitlementInSubscription",
        )
    return entitlement


def uses_usage(request: CheckRequest, entitlement: FeatureEntitlement | None) -> bool:
    """Whether usage (Stigg's and local) decides this check: metered checks and metered features."""
    return request.kind is CheckKind.METERED or (
        entitlement is not None and entitlement.current_usage is not None
    )


def grant_uses_usage(request: CheckRequest, grant: Grant) -> bool:
    """Whether usage decides a fallback's answer, as :func:`uses_usage` says for a snapshot's:
    metered checks and metered grants (with a ``usage_limit``), each asking for one unit
    unless told, so at 10 of 10 a hard limit denies in every tier."""
    return request.kind is CheckKind.METERED or grant.usage_limit is not None


def usage_terms(
    request: CheckRequest, entitlement: FeatureEntitlement, now_wall: float
) -> UsageTerms | None:
    """The usage side of a check, or ``None`` when usage plays no part in it."""
    if not uses_usage(request, entitlement):
        return None
    # Stigg's denial for usage is about the period it counted: once that period has ended,
    # the new one is judged on usage like any grant. A denial for another reason stands.
    renewed = entitlement.access_denied_reason == USAGE_DENIAL and period_ended(
        entitlement, now_wall
    )
    return UsageTerms(
        granted=entitlement.is_granted or renewed,
        reason=entitlement.access_denied_reason,
        base_usage=usage_in_period(entitlement, now_wall),
        usage_limit=entitlement.usage_limit,
        open_ended=entitlement.has_unlimited_usage or entitlement.has_soft_limit,
    )


def from_snapshot(
    request: CheckRequest,
    snapshot: Snapshot,
    decision: Decision,
    now_wall: float,
    local: LocalUsage | None = None,
) -> AnyEntitlement:
    """Answer a check from Stigg's data, as Stigg itself would, plus local usage."""
    entitlement = _effective(request, snapshot)
    terms = usage_terms(request, entitlement, now_wall)
    has_access = entitlement.is_granted
    reason: str | None = entitlement.access_denied_reason
    used = usage_in_period(entitlement, now_wall)
    if terms is not None:
        used = terms.base_usage if local is None else local.applied_to(terms.base_usage)
        complete = local is None or local.complete
        has_access, reason = terms.judge(used, requested(request), complete=complete)
    if has_access and request.requested_values:
        allowed = set(entitlement.enum_values or ())
        if not allowed.issuperset(request.requested_values):
            has_access, reason = False, "RequestedValuesMismatch"
    return _build(request, entitlement, decision, has_access=has_access, reason=reason, used=used)


@attrs.frozen
class WarmAnswer:
    """A CACHE-tier answer prepared once per snapshot, feature and check shape.

    ``fields`` are the result's fields but its decision; ``usage`` is set when
    the answer depends on usage, so it is judged again with local usage and
    the requested amount on every check. Valid until ``fresh_until_mono``.
    """

    result_type: type[AnyEntitlement]
    fields: dict[str, Any]
    fresh_until_mono: float
    policy_version: str
    usage: UsageTerms | None
    floor: float | None


def warm_answer(
    request: CheckRequest,
    snapshot: Snapshot,
    budget: Staleness,
    *,
    fetched_mono: float,
    now_wall: float,
    policy_version: str,
    decision: Decision,
) -> WarmAnswer:
    """Prepare the CACHE answer for checks shaped like ``request`` on this snapshot
    (``decision``: the walk's; each check's answer gets one of its own)."""
    probe = from_snapshot(request, snapshot, decision, now_wall=now_wall)
    fields = {f.name: getattr(probe, f.name) for f in attrs.fields(type(probe))}
    del fields["decision"]
    entitlement = _effective(request, snapshot)
    terms = usage_terms(request, entitlement, now_wall)
    horizon = budget.fresh_for_s
    moments = [entitlement.valid_until]
    if terms is not None:
        moments.append(entitlement.usage_period_end)  # the usage answer changes at rollover
    for moment in moments:
        if moment is not None:
            horizon = min(horizon, moment.timestamp() - snapshot.fetched_at)
    return WarmAnswer(
        type(probe),
        fields,
        fetched_mono + horizon,
        policy_version,
        terms,
        usage_floor(entitlement, now_wall),
    )


def from_grant(
    request: CheckRequest, grant: Grant, decision: Decision, local: LocalUsage | None = None
) -> AnyEntitlement:
    """Answer a check from a fallback grant (POLICY or DEFAULT), counting local usage."""
    local_usage = 0.0 if local is None else local.applied_to(0.0)
    complete = local is None or local.complete
    has_access = grant.has_access
    reason = None if has_access else "Unknown"
    if (
        has_access
        and grant_uses_usage(request, grant)
        and not _within_limit(
            grant.usage_limit,
            grant.is_unlimited,
            local_usage,
            requested(request),
            complete=complete,
        )
    ):
        has_access, reason = False, USAGE_DENIAL if complete else USAGE_UNKNOWN
    if (
        has_access
        and request.requested_values
        and grant.enum_values is not None
        and not set(grant.enum_values).issuperset(request.requested_values)
    ):
        has_access, reason = False, "RequestedValuesMismatch"
    entitlement = FeatureEntitlement(
        request.feature_id,
        None,
        is_granted=grant.has_access,
        usage_limit=grant.value if request.kind is CheckKind.NUMERIC else grant.usage_limit,
        current_usage=local_usage,
        has_unlimited_usage=grant.is_unlimited,
        enum_values=grant.enum_values,
    )
    return _build(
        request, entitlement, decision, has_access=has_access, reason=reason, used=local_usage
    )


def _build(
    request: CheckRequest,
    entitlement: FeatureEntitlement,
    decision: Decision,
    *,
    has_access: bool,
    reason: str | None,
    used: float,
) -> AnyEntitlement:
    common: dict[str, Any] = {
        "customer_id": request.customer_id,
        "feature_id": request.feature_id,
        "resource_id": request.resource_id,
        "has_access": has_access,
        "access_denied_reason": None if has_access else reason,
        "decision": decision,
    }
    match request.kind:
        case CheckKind.BOOLEAN:
            return BooleanEntitlement(**common)
        case CheckKind.NUMERIC:
            return NumericEntitlement(
                **common,
                value=entitlement.usage_limit,
                is_unlimited=entitlement.has_unlimited_usage,
            )
        case CheckKind.METERED:
            return MeteredEntitlement(
                **common,
                usage_limit=entitlement.usage_limit,
                current_usage=used,
                requested_usage=requested(request),
                is_unlimited=entitlement.has_unlimited_usage,
                has_soft_limit=entitlement.has_soft_limit,
                reset_period=entitlement.reset_period,
                usage_period_start=entitlement.usage_period_start,
                usage_period_end=entitlement.usage_period_end,
            )
        case CheckKind.ENUM:
            return EnumEntitlement(
                **common,
                enum_values=entitlement.enum_values or (),
                requested_values=request.requested_values,
            )
        case CheckKind.GENERIC:
            return _generic(request, entitlement, common, used)
        case _:
            assert_never(request.kind)


def _generic(
    request: CheckRequest, entitlement: FeatureEntitlement, common: dict[str, Any], used: float
) -> Entitlement:
    return Entitlement(
        **common,
        feature_type=entitlement.feature_type,
        usage_limit=entitlement.usage_limit,
        current_usage=used if entitlement.current_usage is not None else None,
        requested_usage=request.requested_usage,
        is_unlimited=entitlement.has_unlimited_usage,
        has_soft_limit=entitlement.has_soft_limit,
        reset_period=entitlement.reset_period,
        usage_period_start=entitlement.usage_period_start,
        usage_period_end=entitlement.usage_period_end,
        enum_values=entitlement.enum_values,
        requested_values=request.requested_values or None,
        valid_until=entitlement.valid_until,
    )


def usage_floor(entitlement: FeatureEntitlement | None, now_wall: float) -> float | None:
    """Local usage stamped before this (wall time) belongs to an earlier period."""
    if entitlement is None:
        return None
    end = entitlement.usage_period_end
    if end is not None and end.timestamp() <= now_wall:
        return end.timestamp()
    start = entitlement.usage_period_start
    return None if start is None else start.timestamp()


def valid_until_passed(entitlement: FeatureEntitlement | None, now_wall: float) -> bool:
    """Whether Stigg's own "recalculate after" time for a feature has passed."""
    moment: datetime | None = None if entitlement is None else entitlement.valid_until
    return moment is not None and moment.timestamp() <= now_wall
