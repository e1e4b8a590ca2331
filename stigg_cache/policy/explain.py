"""Plain-language reports on a policy: lint warnings and "who answers this check now"."""

from __future__ import annotations

import time

from stigg_cache._clock import SYSTEM_CLOCK
from stigg_cache.core import engine
from stigg_cache.core.engine import Freshness
from stigg_cache.core.terms import Grant
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
    """Which tier and rule would answer this check right now, and why."""
    budget = policy.staleness_for(feature_id)
    lines = [
        f"policy {policy.source or '<built-in>'} (version {policy.version})",
        (
            f"budget for {feature_id}: fresh_for {budget.fresh_for_s:g}s, "
            f"max_staleness {budget.max_staleness_s:g}s"
        ),
    ]
    resolution = policy.resolve(customer_id, resource_id, feature_id)
    rule = resolution.rule or "built-in default (allow, logged)"
    fallback = f"{resolution.source.value} via {rule}: {_grant_text(resolution.grant)}"
    if store is None:
        lines.append("no store given: assuming nothing is cached")
        lines.append(f"Stigg reachable -> LIVE; unreachable -> {fallback}")
        return lines
    faults: list[str] = []

    cached = SnapshotCache(
        store, SYSTEM_CLOCK, lambda event, error: faults.append(f"{event}: {error}")
    )
    entry = cached.get(customer_id, resource_id)
    lines.extend(f"store problem: {fault}" for fault in faults)
    if entry is None:
        lines.append("no snapshot held for this customer")
        lines.append(f"Stigg reachable -> LIVE; unreachable -> {fallback}")
        return lines
    age = SYSTEM_CLOCK.monotonic() - entry.fetched_mono
    feature = entry.snapshot.entitlements.get(feature_id)
    freshness = engine.judge(
        age,
        budget,
        past_valid_until=engine.valid_until_passed(feature, time.time()),
        dated_in_future=entry.dated_in_future,
    )
    held = "granted" if feature is not None and feature.is_granted else "not granted"
    lines.append(
        f"snapshot held: fetched {age:.0f}s ago ({_SYSTEM_CLOCK_NOTE}); {feature_id} {held}"
    )
    if freshness is Freshness.FRESH:
        lines.append("-> CACHE: answered from the snapshot, no network")
    elif freshness is Freshness.STALE:
        lines.append("-> STALE: answered from the snapshot at once, refreshed in the background")
    else:
        lines.append("snapshot is older than max_staleness: not trusted")
        lines.append(f"Stigg reachable -> LIVE; unreachable -> {fallback}")
    return lines
