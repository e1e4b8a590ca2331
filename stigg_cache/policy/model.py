"""The fallback policy as data, and the pure rules that resolve it.

Its parts are in :mod:`stigg_cache.policy.rules`; reading and validating a
file is :mod:`stigg_cache.policy.loader`'s (which knows nothing of this class),
watching it :mod:`stigg_cache.policy.watcher`'s.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from stigg_cache.core.terms import Grant, Resolution, Staleness
from stigg_cache.models import Source
from stigg_cache.policy import loader
from stigg_cache.policy.rules import ANY_FEATURE, FeaturePolicy, Meter, PolicyParts, Rule

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
        return cls.from_parts(loader.load_policy_file(path))

    @classmethod
    def from_yaml(cls, content: bytes | str, source: str = "<policy>") -> FallbackPolicy:
        """Validate policy text (as it would be read from a file)."""
        data = content.encode() if isinstance(content, str) else content
        return cls.from_parts(loader.load_policy(data, source))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "<dict>") -> FallbackPolicy:
        """Validate a policy given as plain data, in the file's schema."""
        return cls.from_parts(loader.load_policy_dict(data, source))

    @classmethod
    def from_parts(cls, parts: PolicyParts) -> FallbackPolicy:
        """The policy of validated parts."""
        return cls(**attrs.asdict(parts, recurse=False))

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


BUILTIN_POLICY = FallbackPolicy()


class PolicyRef:
    """The policy in force: the one reference every part of a client reads.

    A reload swaps ``current`` whole (one store, atomic under the GIL) and tells
    the listeners; a check reads it once and keeps the policy it started with.
    """

    __slots__ = ("_listeners", "current")

    def __init__(self, policy: FallbackPolicy) -> None:
        self.current = policy
        self._listeners: tuple[Callable[[FallbackPolicy], None], ...] = ()

    def use(self, policy: FallbackPolicy) -> None:
        """Answer with ``policy`` from now (checks in flight keep the one they read)."""
        self.current = policy
        for listener in self._listeners:
            listener(policy)

    def subscribe(self, listener: Callable[[FallbackPolicy], None]) -> None:
        """Tell ``listener`` of every policy :meth:`use` puts in force."""
        self._listeners = (*self._listeners, listener)

    def keep_snapshots_s(self) -> float:
        """How long a stored snapshot is of use under the policy in force now."""
        return self.current.keep_snapshots_s


__all__ = [
    "ANY_FEATURE",
    "BUILTIN_ALLOW",
    "BUILTIN_POLICY",
    "PLAN_MEMORY_S",
    "FallbackPolicy",
    "FeaturePolicy",
    "Meter",
    "PolicyRef",
    "Rule",
]
