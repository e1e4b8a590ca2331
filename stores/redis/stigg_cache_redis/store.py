"""Snapshots in Redis, shared by every process of a fleet.

``SET`` replaces a value atomically; keys live under
``stigg-cache:{namespace}:snap:`` so environments sharing one Redis stay
apart; an optional TTL lets Redis drop snapshots nobody refreshed.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import cast

from stigg_cache.stores import MISSING, Missing, redact_url
from stigg_cache_redis._connection import Gate, RedisSettings

SCAN_BATCH = 500


def _glob_escape(text: str) -> str:
    return "".join(f"\\{char}" if char in "*?[]\\" else char for char in text)


class RedisStore:
    """The store protocol on Redis strings."""

    def __init__(self, settings: RedisSettings) -> None:
        """Connect lazily (the first call opens the pool's first connection)."""
        self.settings = settings
        self._redis = settings.connect()
        self._prefix = f"stigg-cache:{settings.namespace}:snap:"
        self._gate = Gate(f"redis store {redact_url(settings.url)}")

    @property
    def error(self) -> str | None:
        """The last connection fault, ``None`` once Redis answers again."""
        return self._gate.error

    def get(self, key: str) -> bytes | Missing:
        value = self._gate.call(lambda: self._redis.get(self._prefix + key))
        return MISSING if value is None else cast("bytes", value)

    def put(self, key: str, value: bytes) -> None:
        self._gate.call(lambda: self._redis.set(self._prefix + key, value, ex=self.settings.ttl_s))

    def delete(self, key: str) -> None:
        self._gate.call(lambda: self._redis.delete(self._prefix + key))

    def keys(self, prefix: str = "") -> Iterator[str]:
        pattern = _glob_escape(self._prefix + prefix) + "*"
        found = self._gate.call(
            lambda: list(self._redis.scan_iter(match=pattern, count=SCAN_BATCH))
        )
        start = len(self._prefix)
        return iter([cast("bytes", key).decode()[start:] for key in found])

    def close(self) -> None:
        self._redis.close()
        self._redis.connection_pool.disconnect()

    def __repr__(self) -> str:
        return (
            f"RedisStore({redact_url(self.settings.url)!r}, namespace={self.settings.namespace!r})"
        )
