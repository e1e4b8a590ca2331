"""stigg-cache on Redis: snapshots, the usage outbox and Stigg's rate budgets, shared by a fleet.

Installed, it registers the ``redis://`` and ``rediss://`` schemes, so
``ResilientClient(inner, store="redis://127.0.0.1:6379/0?namespace=prod")``
needs no import: snapshots, the outbox and pacing then all live in Redis.
"""

from __future__ import annotations

from stigg_cache_redis._connection import RedisSettings
from stigg_cache_redis.outbox import RedisBucket, RedisOutbox
from stigg_cache_redis.store import RedisStore


def open_redis_store(url: str) -> RedisStore:
    """The ``stigg_cache.stores`` entry point."""
    return RedisStore(RedisSettings.from_url(url))


def open_redis_outbox(url: str) -> RedisOutbox:
    """The ``stigg_cache.outboxes`` entry point."""
    return RedisOutbox(RedisSettings.from_url(url))


__all__ = [
    "RedisBucket",
    "RedisOutbox",
    "RedisSettings",
    "RedisStore",
    "open_redis_outbox",
    "open_redis_store",
]
