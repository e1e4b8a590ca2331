"""Fallback policy: what to answer when no trustworthy snapshot exists."""

from stigg_cache.core.terms import Grant, Resolution, Staleness
from stigg_cache.policy.model import BUILTIN_POLICY, FallbackPolicy, FeaturePolicy, Meter, Rule

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
