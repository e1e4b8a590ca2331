"""The parts a fallback policy is written in: per-feature settings, rules, meters.

Pure data with the matching rules; :class:`PolicyParts` is what the loader
validates a file into, and :class:`~stigg_cache.policy.model.FallbackPolicy`
is built from.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping
from typing import Literal

import attrs

from stigg_cache.core.terms import Grant, Staleness

ANY_FEATURE = "*"


@attrs.frozen
class FeaturePolicy:
    """Per-feature settings: its own staleness budget and its fallback."""

    fresh_for_s: float | None = None
    max_staleness_s: float | None = None
    fallback: Grant | None = None


NO_RESOURCE = None  # in ``resources``: matches a check that names no resource


def _compile_globs(patterns: tuple[str | None, ...]) -> re.Pattern[str] | None:
    """One pattern for a matcher's globs (``NO_RESOURCE`` is not a glob: left out)."""
    globs = [p for p in patterns if p is not None]
    if not globs:
        return None
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in globs))


@attrs.frozen
class Rule:
    """One ordered rule: if every given matcher matches, its grants answer.

    An empty matcher matches anything. Customers, resources and plans match alike:
    an id or a shell glob (``ent-*``), any one of a matcher's patterns will do, and a
    check matches ``plans`` when any plan of the customer does. A glob matches a
    resource, so ``resources: ["*"]`` is "any resource"; a check that names no resource
    (a customer-level check) matches ``resources`` only through ``null``
    (:data:`NO_RESOURCE`).
    """

    name: str
    grants: Mapping[str, Grant]
    customers: tuple[str, ...] = ()
    resources: tuple[str | None, ...] = ()
    plans: tuple[str, ...] = ()
    _customer_re: re.Pattern[str] | None = attrs.field(init=False, eq=False, repr=False)
    _resource_re: re.Pattern[str] | None = attrs.field(init=False, eq=False, repr=False)
    _plan_re: re.Pattern[str] | None = attrs.field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "_customer_re", _compile_globs(self.customers))
        object.__setattr__(self, "_resource_re", _compile_globs(self.resources))
        object.__setattr__(self, "_plan_re", _compile_globs(self.plans))

    def matches(self, customer_id: str, resource_id: str | None, plan_ids: tuple[str, ...]) -> bool:
        """Whether this rule applies to the given scope."""
        if self._customer_re is not None and not self._customer_re.match(customer_id):
            return False
        if self.resources and not self._matches_resource(resource_id):
            return False
        plan_re = self._plan_re
        return plan_re is None or any(plan_re.match(plan) for plan in plan_ids)

    def _matches_resource(self, resource_id: str | None) -> bool:
        if resource_id is None:
            return NO_RESOURCE in self.resources
        return self._resource_re is not None and self._resource_re.match(resource_id) is not None

    def grant_for(self, feature_id: str) -> Grant | None:
        """The grant of this rule for a feature, the ``"*"`` entry otherwise."""
        return self.grants.get(feature_id) or self.grants.get(ANY_FEATURE)


def plans_unmatchable(rules: Iterable[Rule], client: str) -> str | None:
    """The warning for rules on ``plans:`` under a client that cannot know plans (the
    sidecar's protocol carries none), or ``None`` when no rule matches plans."""
    names = [rule.name for rule in rules if rule.plans]
    if not names:
        return None
    return (
        f"rules {', '.join(names)} match plans, which {client} cannot know (its answers "
        "carry no plan): these rules never match with it; match customers or resources "
        "instead, or use a client that reads subscriptions (REST, GraphQL)"
    )


@attrs.frozen
class Meter:
    """Maps a raw event name to a feature for local metering during outages."""

    event: str
    aggregate: Literal["count", "sum"] = "count"
    field: str | None = None


@attrs.frozen
class PolicyParts:
    """A validated policy, part by part, before it is a :class:`FallbackPolicy`."""

    staleness: Staleness
    features: Mapping[str, FeaturePolicy]
    rules: tuple[Rule, ...]
    default: Grant | None
    meters: Mapping[str, Meter]
    version: str
    source: str | None
