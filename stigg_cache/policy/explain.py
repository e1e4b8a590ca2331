"""Plain-language reports on a policy: lint warnings and "who answers this check now"."""

from __future__ import annotations

import time

import attrs

from stigg_cache._support.clock import SYSTEM_CLOCK
from stigg_cache.core import walk
from stigg_cache.core.engine import CheckKind, CheckRequest
from stigg_cache.core.terms import CachedSnapshot, Grant
from stigg_cache.errors import FailureKind, StiggUnavailableError
from stigg_cache.models import AnyEntitlement, Snapshot, Source
from stigg_cache.policy.model import FallbackPolicy
from stigg_cache.policy.rules import Rule

_SYSTEM_CLOCK_NOTE = "ages use this machine's wall clock"


@attrs.frozen
class Looked:
    """What a store held for the check's customer when it was looked at: its snapshot,
    if any, and the problems met reading it (the caller reads the store; this module
    only explains what was found)."""

    entry: CachedSnapshot | None
    faults: tuple[str, ...] = ()


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
    looked: Looked | None = None,
) -> list[str]:
    """Which tier and rule would answer this check right now, and why: the decision walk
    of a check (:mod:`stigg_cache.core.walk`) driven over the store, with Stigg's answer
    told both ways; then every rule, and why it matches this check or not.

    ``looked``: what the store held for the customer (``None``: no store was given).
    """
    budget = policy.staleness_for(feature_id)
    lines = [
        f"policy {policy.source or '<built-in>'} (version {policy.version})",
        (
            f"budget for {feature_id}: fresh_for {budget.fresh_for_s:g}s, "
            f"max_staleness {budget.max_staleness_s:g}s"
        ),
    ]
    request = CheckRequest(CheckKind.GENERIC, customer_id, feature_id, resource_id)
    walked = _walked(policy, request, looked)
    entry = None if looked is None else looked.entry
    plan_ids = None if entry is None else entry.snapshot.plan_ids
    return lines + walked + explain_rules(policy, request, plan_ids)


def _walked(policy: FallbackPolicy, request: CheckRequest, looked: Looked | None) -> list[str]:
    """The walk's lines, over what the store held."""
    state = walk.begin(
        request,
        policy,
        started=0.0,
        check_timeout_s=0.0,
        offline=False,
        last_error=None,
        usage_read=True,
    )
    if looked is None:
        return ["no store given: assuming nothing is cached", *_fetched(state, None)]
    lines = [f"store problem: {fault}" for fault in looked.faults]
    entry = looked.entry
    if entry is None:
        return [*lines, "no snapshot held for this customer", *_fetched(state, None)]
    now = walk.Now(SYSTEM_CLOCK.monotonic(), time.time())
    age = now.mono - entry.fetched_mono
    feature = entry.snapshot.entitlements.get(request.feature_id)
    held = "granted" if feature is not None and feature.is_granted else "not granted"
    lines.append(
        f"snapshot held: fetched {age:.0f}s ago ({_SYSTEM_CLOCK_NOTE}); {request.feature_id} {held}"
    )
    read_store = state.held(None, now)  # no memory here: what the store holds
    assert isinstance(read_store, walk.ReadStore)
    judged = read_store.held(entry, now)
    if isinstance(judged, walk.ReadNewer):  # this store is the only one looked at
        judged = judged.held(None, now)
    return [*lines, *_fetched(judged, entry)]


def explain_rules(
    policy: FallbackPolicy, request: CheckRequest, plan_ids: tuple[str, ...] | None
) -> list[str]:
    """Every rule in order, whether it matches the check and why, key by key (a rule
    matches when every key it gives holds). ``plan_ids``: the plans of the snapshot held
    (``None``: none is). Each key is judged by the rule's own matcher, given that key alone.
    """
    if not policy.rules:
        return ["rules: none (the feature's fallback, then the default, answer)"]
    lines = ["rules, when no trustworthy snapshot is held (first match wins; every key must hold):"]
    for number, rule in enumerate(policy.rules, 1):
        keys = [_key(rule, key, request, plan_ids) for key in MATCH_KEYS if getattr(rule, key)]
        if rule.matches(request.customer_id, request.resource_id, plan_ids or ()):
            grant = rule.grant_for(request.feature_id)
            outcome = (
                f"matches, and answers {request.feature_id}: {_grant_text(grant)}"
                if grant is not None
                else f"matches, but grants nothing for {request.feature_id} (no entry for it "
                f"or '*'): the next rule is tried"
            )
        else:
            outcome = "does not match"
        because = "; ".join(keys) if keys else "it gives no key: every check"
        lines.append(f"  {number}. {rule.name}: {outcome} ({because})")
    return lines


MATCH_KEYS = ("customers", "resources", "plans")


def _key(rule: Rule, key: str, request: CheckRequest, plan_ids: tuple[str, ...] | None) -> str:
    """Whether one key of a rule holds for the check, and why: the rule's own matcher,
    asked with that key alone."""
    alone = attrs.evolve(
        rule,
        customers=rule.customers if key == "customers" else (),
        resources=rule.resources if key == "resources" else (),
        plans=rule.plans if key == "plans" else (),
    )
    holds = alone.matches(request.customer_id, request.resource_id, plan_ids or ())
    patterns = ", ".join("null" if p is None else p for p in getattr(rule, key))
    if key == "plans":
        if plan_ids is None:
            return "plans: needs a snapshot; none is cached"
        if not plan_ids:
            return "plans: the snapshot held names no plan"
        found = "one" if holds else "none"
        return (
            f"plans: the snapshot's plans ({', '.join(plan_ids)}) include {found} of [{patterns}]"
        )
    subject = repr(request.customer_id) if key == "customers" else _resource(request)
    return f"{key}: {subject} {'matches' if holds else 'matches none of'} [{patterns}]"


def _resource(request: CheckRequest) -> str:
    return "no resource" if request.resource_id is None else repr(request.resource_id)


def _fetched(state: walk.State, entry: CachedSnapshot | None) -> list[str]:
    """The lines for where a walk stands: its answer, else Stigg's two outcomes."""
    now = walk.Now(SYSTEM_CLOCK.monotonic(), time.time())
    if isinstance(state, walk.ReadMemory):  # nothing looked up: nothing held
        state = state.held(None, now)
    if isinstance(state, walk.ReadStore):
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
