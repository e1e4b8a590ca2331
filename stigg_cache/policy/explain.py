"""Plain-language reports on a policy: lint warnings and "who answers this check now"."""

from __future__ import annotations

import time

from stigg_cache._clock import SYSTEM_CLOCK
from stigg_cache.core import walk
from stigg_cache.core.engine import CheckKind, CheckRequest
from stigg_cache.core.terms import CachedSnapshot, Grant
from stigg_cache.errors import FailureKind, StiggUnavailableError
from stigg_cache.models import AnyEntitlement, Snapshot, Source
from stigg_cache.policy.model import FallbackPolicy
from stigg_cache.stores import Store
from stigg_cache.stores.layered import SnapshotCache

_SYSTEM_CLOCK_NOTE = "ages use this machine's wall clock"


def lint(policy: FallbackPolicy) -> list[str]:
    """Warnings about a valid policy that is still risky to run with."""
    warnings: list[str] = []
    outage_note = (
        "whoever can cut your network to Stigg can force this tier, so list paid features "
        "under 'features:' with an explicit fallback"
    )
    if policy.default is None:
        warnings.append(
            "no 'default': features not listed are ALLOWED during an outage by the built-in "
            f"default; {outage_note}"
        )
    elif policy.default.has_access:
        warnings.append(
            "'default' grants access: any feature not listed under 'features:' or a rule is "
            f"granted during an outage only by the catch-all; {outage_note}"
        )
    for name, feature in policy.features.items():
        if feature.fallback is None:
            warnings.append(f"features.{name} has no fallback: it falls to the default")
    return warnings


def _grant_text(grant: Grant) -> str:
    parts = [f"has_access={grant.has_access}"]
    if grant.usage_limit is not None:
        parts.append(f"usage_limit={grant.usage_limit:g}")
    if grant.value is not None:
        parts.append(f"value={grant.value:g}")
    if grant.enum_values is not None:
        parts.append(f"values={list(grant.enum_values)}")
    if grant.is_unlimited:
        parts.append("unlimited")
    return ", ".join(parts)


def explain(
    policy: FallbackPolicy,
    *,
    customer_id: str,
    feature_id: str,
    resource_id: str | None = None,
    store: Store | None = None,
) -> list[str]:
    """Which tier and rule would answer this check right now, and why: the decision walk
    of a check (:mod:`stigg_cache.core.walk`) driven over the store, with Stigg's answer
    told both ways."""
    budget = policy.staleness_for(feature_id)
    lines = [
        f"policy {policy.source or '<built-in>'} (version {policy.version})",
        (
            f"budget for {feature_id}: fresh_for {budget.fresh_for_s:g}s, "
            f"max_staleness {budget.max_staleness_s:g}s"
        ),
    ]
    request = CheckRequest(CheckKind.GENERIC, customer_id, feature_id, resource_id)
    state = walk.begin(
        request, policy, started=0.0, check_timeout_s=0.0, offline=False, last_error=None
    )
    if store is None:
        lines.append("no store given: assuming nothing is cached")
        return lines + _fetched(state, None)
    faults: list[str] = []
    cached = SnapshotCache(
        store, SYSTEM_CLOCK, lambda event, error: faults.append(f"{event}: {error}")
    )
    entry = cached.get(customer_id, resource_id)
    lines.extend(f"store problem: {fault}" for fault in faults)
    if entry is None:
        lines.append("no snapshot held for this customer")
        return lines + _fetched(state, None)
    now = walk.Now(SYSTEM_CLOCK.monotonic(), time.time())
    age = now.mono - entry.fetched_mono
    feature = entry.snapshot.entitlements.get(feature_id)
    held = "granted" if feature is not None and feature.is_granted else "not granted"
    lines.append(
        f"snapshot held: fetched {age:.0f}s ago ({_SYSTEM_CLOCK_NOTE}); {feature_id} {held}"
    )
    judged = state.held(entry, now)
    if isinstance(judged, walk.ReadNewer):  # this store is the only one looked at
        judged = judged.held(None, now)
    return lines + _fetched(judged, entry)


def _fetched(state: walk.State, entry: CachedSnapshot | None) -> list[str]:
    """The lines for where a walk stands: its answer, else Stigg's two outcomes."""
    now = walk.Now(SYSTEM_CLOCK.monotonic(), time.time())
    if isinstance(state, walk.ReadHeld):  # nothing looked up: nothing held
        state = state.held(None, now)
    if isinstance(state, walk.Unusable):
        state = state.dropped(now)
    if isinstance(state, walk.Answered):
        decision = _answer(state).decision
        assert decision is not None
        if decision.source is Source.CACHE:
            return ["-> CACHE: answered from the snapshot, no network"]
        return ["-> STALE: answered from the snapshot at once, refreshed in the background"]
    assert isinstance(state, walk.Fetch)
    lines = [] if entry is None else ["snapshot is older than max_staleness: not trusted"]
    unreachable = StiggUnavailableError(FailureKind.CONNECTION, "unreachable")
    fallback = state.fetched(unreachable, now)
    decision = _answer(fallback).decision
    assert decision is not None
    assert fallback.grant is not None
    rule = decision.rule or "built-in default (allow, logged)"
    told = f"{decision.source.value} via {rule}: {_grant_text(fallback.grant)}"
    return [*lines, f"Stigg reachable -> LIVE; unreachable -> {told}"]


def _answer(state: walk.Answered) -> AnyEntitlement:
    answer = state.judgement.answer(lambda *_: None)  # no usage: a look, not a check
    assert not isinstance(answer, Snapshot)
    return answer
