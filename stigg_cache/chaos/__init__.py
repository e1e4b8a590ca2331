"""Chaos tooling: a fake Stigg on loopback (and, later, a fault proxy and scenarios)."""

from stigg_cache.chaos.fake import FakeMode, FakeStigg

__all__ = ["FakeMode", "FakeStigg"]
