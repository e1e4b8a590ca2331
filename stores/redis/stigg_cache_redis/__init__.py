"""stigg-cache on Redis: snapshots, the usage outbox and Stigg's rate budgets, shared by a fleet.

Installed, it registers the ``redis://`` and ``rediss://`` schemes, so
``ResilientClient(inner, store="redis://127.0.0.1:6379/0?namespace=prod")``
needs no import: snapshots, the outbox and pacing then all live in Redis.
"""

from __future__ import annotations

from stigg_cache.outbox.sqlite import SqliteOutbox
from stigg_cache_redis._connection import RedisSettings
from stigg_cache_redis._local import default_local_outbox
from stigg_cache_redis.outbox import RedisOutbox
from stigg_cache_redis.pacing import RedisBucket
from stigg_cache_redis.store import RedisStore


def open_redis_store(url: str, *, read_only: bool = False) -> RedisStore:
    """The ``stigg_cache.stores`` entry point (opening writes nothing, read-only or not)."""
    del read_only
    return RedisStore(RedisSettings.from_url(url))


def open_redis_outbox(
    url: str, *, read_only: bool = False, environment: str | None = None
) -> RedisOutbox:
    """The ``stigg_cache.outboxes`` entry point.

    ``environment``: the client's environment token (see :class:`RedisOutbox`).
    Read-only, the local outbox (where usage waits while Redis is unreachable) is read
    if it exists and never created.
    """
    settings = RedisSettings.from_url(url)
    if not read_only:
        return RedisOutbox(settings, environment=environment)
    local = settings.local_outbox or default_local_outbox(settings, environment)
    kept = SqliteOutbox(local, read_only=True) if local.exists() else SqliteOutbox(None)
    return RedisOutbox(settings, kept, environment=environment)


__all__ = [
    "RedisBucket",
    "RedisOutbox",
    "RedisSettings",
    "RedisStore",
    "open_redis_outbox",
    "open_redis_store",
]
