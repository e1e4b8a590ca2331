"""Snapshots in Redis, shared by every process of a fleet.

``SET`` replaces a value atomically; keys live under
``stigg-cache:{namespace}:snap:`` so environments sharing one Redis stay
apart; an optional TTL lets Redis drop snapshots nobody refreshed.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import cast

from stigg_cache.stores import MISSING, Missing, redact_url
from stigg_cache_redis._connection import Gate, RedisSettings

SCAN_BATCH = 500


def _glob_escape(text: str) -> str:
    return "".join(f"\\{char}" if char in "*?[]\\" else char for char in text)


# Free, expired (Redis dropped it) or ours: (re)take it; a ttl of 0 gives it back.
_LEASE = """
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return 0 end
if tonumber(ARGV[2]) <= 0 then redis.call('DEL', KEYS[1])
else redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) end
return 1
"""


class RedisStore:
    """The store protocol on Redis strings."""

    def __init__(self, settings: RedisSettings) -> None:
        """Connect lazily (the first call opens the pool's first connection)."""
        self.settings = settings
        self._redis = settings.connect()
        self._prefix = f"stigg-cache:{settings.namespace}:snap:"
        self._leases = f"stigg-cache:{settings.namespace}:lease:"
        self._lease = self._redis.register_script(_LEASE)
        self._gate = Gate(f"redis store {redact_url(settings.url)}")
        self._kept: tuple[str, float] | None = None  # prefix, seconds: the TTL by default

    @property
    def namespace(self) -> str:
        """The environment this store's keys belong to (signatures are bound to it)."""
        return self.settings.namespace

    @property
    def error(self) -> str | None:
        """The last connection fault, ``None`` once Redis answers again."""
        return self._gate.error

    def get(self, key: str) -> bytes | Missing:
        value = self._gate.call(lambda: self._redis.get(self._prefix + key))
        return MISSING if value is None else cast("bytes", value)

    def put(self, key: str, value: bytes) -> None:
        ttl = self.settings.ttl_s
        if ttl is None and self._kept is not None and key.startswith(self._kept[0]):
            ttl = math.ceil(self._kept[1])
        self._gate.call(lambda: self._redis.set(self._prefix + key, value, ex=ttl))

    def keep_for(self, prefix: str, seconds: float, max_bytes: int | None) -> None:
        """Entries under ``prefix`` written from now on expire after ``seconds`` (unless the
        URL sets ``ttl``); a byte bound is Redis's own (``maxmemory``)."""
        del max_bytes
        self._kept = (prefix, seconds)

    def prune(self, limit: int) -> int:
        """Redis expires entries by itself."""
        del limit
        return 0

    def touch(self, keys: Sequence[str]) -> None:
        """Redis notes every read itself (an ``allkeys-lru`` ``maxmemory-policy`` uses it)."""
        del keys

    def delete(self, key: str) -> None:
        self._gate.call(lambda: self._redis.delete(self._prefix + key))

    def lease(self, key: str, owner: str, ttl_s: float) -> bool:
        """Taken when free (or already ours) with an expiry Redis keeps (``SET ... PX``)."""
        name, ttl_ms = self._leases + key, max(0, round(ttl_s * 1000))
        return bool(self._gate.call(lambda: self._lease(keys=[name], args=[owner, ttl_ms])))

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
