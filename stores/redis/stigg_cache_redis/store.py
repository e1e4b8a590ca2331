"""Snapshots in Redis, shared by every process of a fleet.

``SET`` replaces a value atomically; keys live under
``stigg-cache:{namespace}:snap:`` so environments sharing one Redis stay
apart; an optional TTL lets Redis drop snapshots nobody refreshed.

Each family of keys (``snapshot:``: the text up to a key's first colon) is also
listed in a sorted set scored by expiry, written in the same round trip, so the
snapshots are counted (``status()``) without walking the keyspace: a ``SCAN`` of
a Redis holding millions of keys, by every process once a minute, kept the
server and each process busy (``status()`` took 5 ms instead of 0.5 while it ran).
A key Redis evicts under ``maxmemory`` stays counted until its expiry passes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from typing import Any, cast

from stigg_cache.stores import MISSING, Missing, redact_url
from stigg_cache.stores.base import FENCE_KEEP_S, next_generation
from stigg_cache_redis._connection import Gate, RedisSettings

SCAN_BATCH = 500


def _family(key: str) -> str:
    """The family a key is counted in: its text up to its first colon (``snapshot:``)."""
    head, colon, _ = key.partition(":")
    return head + colon


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


# The value goes and the generation moves on (to ARGV[1], microseconds, or one more) at once.
_FENCE = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
local next = math.max(tonumber(ARGV[1]), current + 1)
redis.call('SET', KEYS[1], string.format('%d', next), 'PX', ARGV[2])
redis.call('DEL', KEYS[2])
redis.call('ZREM', KEYS[3], ARGV[3])
return 1
"""
# Written only while the generation is the one the writer saw (ARGV[1]), with put's TTL.
_PUT_IF_GENERATION = """
if (redis.call('GET', KEYS[1]) or '0') ~= ARGV[1] then return 0 end
if ARGV[3] == '' then redis.call('SET', KEYS[2], ARGV[2])
else redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[3]) end
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[5])
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
        self._indexes = f"stigg-cache:{settings.namespace}:index:"  # + a family of keys
        self._lease = self._redis.register_script(_LEASE)
        self._fences = f"stigg-cache:{settings.namespace}:fence:"
        self._fence = self._redis.register_script(_FENCE)
        self._put_if_generation = self._redis.register_script(_PUT_IF_GENERATION)
        self._gate = Gate(f"redis store {redact_url(settings.url)}")
        self._kept: tuple[str, float] | None = None  # prefix, seconds: the TTL by default
        self._families: set[str] = set()  # of the keys written here: their sets are trimmed

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
        ttl, expires = self._ttl_of(key)
        self._families.add(_family(key))
        pipe = self._redis.pipeline(transaction=False)  # one round trip
        pipe.set(self._prefix + key, value, ex=ttl)
        pipe.zadd(self._index_of(key), {key: expires})
        self._gate.call(pipe.execute)

    def _ttl_of(self, key: str) -> tuple[int | None, float]:
        """The TTL a value written under ``key`` gets, and when it expires (wall time)."""
        ttl = self.settings.ttl_s
        if ttl is None and self._kept is not None and key.startswith(self._kept[0]):
            ttl = math.ceil(self._kept[1])
        return ttl, math.inf if ttl is None else time.time() + ttl

    def generation(self, key: str) -> int:
        value = self._gate.call(lambda: self._redis.get(self._fences + key))
        return 0 if value is None else int(cast("bytes", value))

    def fence(self, key: str) -> None:
        """The value goes and the generation moves on in one script; the fence expires once
        it has outlived any fetch it fences."""
        keys = [self._fences + key, self._prefix + key, self._index_of(key)]
        args: list[int | str | bytes] = [next_generation(0), round(FENCE_KEEP_S * 1000), key]
        self._gate.call(lambda: self._fence(keys=keys, args=args))

    def put_if_generation(self, key: str, value: bytes, generation: int) -> bool:
        """The look and the write in one script: no fence comes in between."""
        ttl, expires = self._ttl_of(key)
        self._families.add(_family(key))
        keys = [self._fences + key, self._prefix + key, self._index_of(key)]
        score = "+inf" if expires == math.inf else repr(expires)
        args: list[int | str | bytes] = [str(generation), value, ttl or "", score, key]
        return bool(self._gate.call(lambda: self._put_if_generation(keys=keys, args=args)))

    def keep_for(self, prefix: str, seconds: float, max_bytes: int | None) -> None:
        """Entries under ``prefix`` written from now on expire after ``seconds`` (unless the
        URL sets ``ttl``); a byte bound is Redis's own (``maxmemory``)."""
        del max_bytes
        self._kept = (prefix, seconds)

    def prune(self, limit: int) -> int:
        """Redis expires entries by itself; the families' sorted sets drop what expired
        (or they would grow with every customer ever written, counted or not)."""
        del limit
        pipe = self._redis.pipeline(transaction=False)
        for family in sorted(self._families):
            self._drop_expired(pipe, family)
        self._gate.call(pipe.execute)
        return 0

    def touch(self, keys: Sequence[str]) -> None:
        """Redis notes every read itself (an ``allkeys-lru`` ``maxmemory-policy`` uses it)."""
        del keys

    def delete(self, key: str) -> None:
        pipe = self._redis.pipeline(transaction=False)
        pipe.delete(self._prefix + key)
        pipe.zrem(self._index_of(key), key)
        self._gate.call(pipe.execute)

    def count(self, prefix: str) -> int:
        """Live keys of a family (``snapshot:``) from its sorted set, expired ones dropped
        from it first; any other prefix is walked."""
        if not prefix.endswith(":") or _family(prefix) != prefix:
            return sum(1 for _ in self.keys(prefix))
        pipe = self._redis.pipeline(transaction=False)
        self._drop_expired(pipe, prefix)
        pipe.zcard(self._index_of(prefix))
        return int(self._gate.call(pipe.execute)[1])

    def _drop_expired(self, pipe: Any, family: str) -> None:
        pipe.zremrangebyscore(self._index_of(family), "-inf", time.time())

    def _index_of(self, key: str) -> str:
        return self._indexes + _family(key)

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
