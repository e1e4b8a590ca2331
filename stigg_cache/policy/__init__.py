"""Fallback policy: what to answer when no trustworthy snapshot exists."""

from stigg_cache.policy.model import (
    BUILTIN_POLICY,
    FallbackPolicy,
    FeaturePolicy,
    Grant,
    Meter,
    Resolution,
    Rule,
    Staleness,
)

__all__ = [
    "BUILTIN_POLICY",
    "FallbackPolicy",
    "FeaturePolicy",
    "Grant",
    "Meter",
    "Resolution",
    "Rule",
    "Staleness",
]
