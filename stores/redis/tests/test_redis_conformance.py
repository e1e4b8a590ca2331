"""The Redis store and outbox pass the shipped conformance suites against the real server."""

from __future__ import annotations

from pathlib import Path

from stigg_cache.outbox.base import Outbox
from stigg_cache.testing.conformance import DurableStoreConformance
from stigg_cache.testing.outbox_conformance import SharedOutboxConformance
from stigg_cache_redis import open_redis_outbox

from conftest import url_for


class TestRedisStore(DurableStoreConformance):
    def store_url(self, base: Path) -> str:
        return url_for(base)


class TestRedisOutbox(SharedOutboxConformance):
    def outbox_url(self, base: Path) -> str:
        return url_for(base)

    def make_outbox(self, base: Path) -> Outbox:
        return open_redis_outbox(url_for(base))
