"""Chaos tooling: a fake Stigg on loopback (REST, GraphQL, the sidecar), a fault proxy, and
scenarios with their runner (`stigg-cache chaos run`)."""

from stigg_cache.chaos.fake import FakeMode, FakeStigg

__all__ = ["FakeMode", "FakeStigg"]
