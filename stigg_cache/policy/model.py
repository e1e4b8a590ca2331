"""The fallback policy as data, and the pure rules that resolve it.

No I/O here: loading and watching live in :mod:`stigg_cache.policy.loader`
and :mod:`stigg_cache.policy.watcher`.
"""

from __future__ import annotations

import fnmatch
import importlib
import os
import re
from collections.abc import Mapping
from typing import Any, Literal

import attrs

from stigg_cache.core.terms import Grant, Resolution, Staleness
from stigg_cache.models import Source

ANY_FEATURE = "*"


@attrs.frozen
class FeaturePolicy:
    """Per-feature settings: its own staleness budget and its fallback."""

    fresh_for_s: float | None = None
    max_staleness_s: float | None = None
    fallback: Grant | None = None


def _compile_globs(patterns: tuple[str, ...]) -> re.Pattern[str] | None:
    if not patterns:
        return None
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns))


@attrs.frozen
class Rule:
    """One ordered rule: if every given matcher matches, its grants answer.

    An empty matcher matches anything; patterns are shell globs (``ent-*``).
    """

    name: str
    grants: Mapping[str, Grant]
    customers: tuple[str, ...] = ()
    resources: tuple[str, ...] = ()
    plans: tuple[str, ...] = ()
    _customer_re: re.Pattern[str] | None = attrs.field(init=False, eq=False, repr=False)
    _resource_re: re.Pattern[str] | None = attrs.field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "_customer_re", _compile_globs(self.customers))
        object.__setattr__(self, "_resource_re", _compile_globs(self.resources))

    def matches(self, customer_id: str, resource_id: str | None, plan_ids: tuple[str, ...]) -> bool:
        """Whether this rule applies to the given scope."""
        if self._customer_re is not None and not self._customer_re.match(customer_id):
            return False
        if self._resource_re is not None and not self._resource_re.match(resource_id or ""):
            return False
        return not self.plans or any(plan in self.plans for plan in plan_ids)

    def grant_for(self, feature_id: str) -> Grant | None:
        """The grant of this rule for a feature, the ``"*"`` entry otherwise."""
        return self.grants.get(feature_id) or self.grants.get(ANY_FEATURE)


@attrs.frozen
class Meter:
    """Maps a raw event name to a feature for local metering during outages."""

    event: str
    aggregate: Literal["count", "sum"] = "count"
    field: str | None = None


BUILTIN_ALLOW = Grant(has_access=True)
PLAN_MEMORY_S = 30 * 86_400.0  # snapshots kept for plan-matching rules: a month


@attrs.frozen
class FallbackPolicy:
    """A complete, validated fallback policy.

    Attributes:
        version: content hash of the file it came from (``builtin`` otherwise).
        source: the file it came from, if any.
    """

    staleness: Staleness = attrs.field(factory=Staleness)
    features: Mapping[str, FeaturePolicy] = attrs.field(factory=dict)
    rules: tuple[Rule, ...] = ()
    default: Grant | None = None
    meters: Mapping[str, Meter] = attrs.field(factory=dict)
    version: str = "builtin"
    source: str | None = None
    _budgets: dict[str, Staleness] = attrs.field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        budgets = {
            feature_id: Staleness(
                fresh_for_s=self.staleness.fresh_for_s if f.fresh_for_s is None else f.fresh_for_s,
                max_staleness_s=(
                    self.staleness.max_staleness_s
                    if f.max_staleness_s is None
                    else f.max_staleness_s
                ),
            )
            for feature_id, f in self.features.items()
        }
        object.__setattr__(self, "_budgets", budgets)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> FallbackPolicy:
        """Load and validate a ``fallback.yaml``.

        Raises:
            PolicyError: the file cannot be read or is invalid (all issues listed).
        """
        return _loader().load_policy_file(path)  # type: ignore[no-any-return]

    @classmethod
    def from_yaml(cls, content: bytes | str, source: str = "<policy>") -> FallbackPolicy:
        """Validate policy text (as it would be read from a file)."""
        data = content.encode() if isinstance(content, str) else content
        return _loader().load_policy(data, source)  # type: ignore[no-any-return]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "<dict>") -> FallbackPolicy:
        """Validate a policy given as plain data, in the file's schema."""
        return _loader().load_policy_dict(data, source)  # type: ignore[no-any-return]

    def staleness_for(self, feature_id: str) -> Staleness:
        """The staleness budget of a feature (its own, else the global one)."""
        return self._budgets.get(feature_id, self.staleness)

    @property
    def max_staleness_s(self) -> float:
        """The longest budget of any feature: snapshots older are useless."""
        return max(
            [self.staleness.max_staleness_s, *(b.max_staleness_s for b in self._budgets.values())]
        )

    @property
    def keep_snapshots_s(self) -> float:
        """How long a stored snapshot is of use: its longest budget, and with rules that
        match plans at least ``PLAN_MEMORY_S`` (an expired snapshot still tells a rule
        which plans its customer is on)."""
        if any(rule.plans for rule in self.rules):
            return max(self.max_staleness_s, PLAN_MEMORY_S)
        return self.max_staleness_s

    def resolve(
        self,
        customer_id: str,
        resource_id: str | None,
        feature_id: str,
        plan_ids: tuple[str, ...] = (),
    ) -> Resolution:
        """Answer for a feature when no trustworthy snapshot exists.

        Order: the first matching rule that grants the feature (POLICY), the
        feature's own fallback, the policy's default, then the built-in allow
        (all DEFAULT).
        """
        for rule in self.rules:
            if rule.matches(customer_id, resource_id, plan_ids):
                grant = rule.grant_for(feature_id)
                if grant is not None:
                    return Resolution(grant, Source.POLICY, rule.name)
        feature = self.features.get(feature_id)
        if feature is not None and feature.fallback is not None:
            return Resolution(feature.fallback, Source.DEFAULT, f"features.{feature_id}")
        if self.default is not None:
            return Resolution(self.default, Source.DEFAULT, "default")
        return Resolution(BUILTIN_ALLOW, Source.DEFAULT, None)


def _loader() -> Any:
    # Imported by name at call time: the decision core uses policies but never
    # loads them, and must not depend on YAML or the file system.
    return importlib.import_module("stigg_cache.policy.loader")


BUILTIN_POLICY = FallbackPolicy()
