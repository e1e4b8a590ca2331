"""Reads of the Redis outbox that change nothing: depth, held records and dead letters."""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from typing import Any, cast

import redis

from stigg_cache.outbox.base import DeadLetter, OutboxStats
from stigg_cache.outbox.records import UsageRecord, unreadable_record
from stigg_cache_redis._connection import Gate
from stigg_cache_redis._records import readable


class Reads:
    """Reads of one outbox's keys, through its gate (each raises StoreError as it does)."""

    def __init__(self, client: redis.Redis, gate: Gate, key_of: Mapping[str, str]) -> None:
        self._redis = client
        self._gate = gate
        self._key_of = key_of

    def stats(self) -> OutboxStats:
        """Depth and leases (on Redis's clock) of what Redis holds."""

        def read() -> list[Any]:
            seconds, micros = self._redis.time()
            clock = seconds + micros / 1e6  # leases end on Redis's clock
            pipe = self._redis.pipeline(transaction=False)
            pipe.zcard(self._key_of["pending"])
            pipe.zcount(self._key_of["event:leased"], f"({clock!r}", "+inf")
            pipe.zcount(self._key_of["usage:leased"], f"({clock!r}", "+inf")
            pipe.zcard(self._key_of["sent"])
            pipe.zcard(self._key_of["dead"])
            pipe.zrange(self._key_of["pending"], 0, 0, withscores=True)
            return list(pipe.execute())

        pending, leased_events, leased_usage, sent, dead, oldest = self._gate.call(read)
        return OutboxStats(
            pending, leased_events + leased_usage, sent, dead, oldest[0][1] if oldest else None
        )

    def unsettled(self) -> list[tuple[UsageRecord, float | None]]:
        """Pending records, and sent ones with their acknowledgement while kept."""
        acked: dict[int, float | None] = {id_: None for id_, _ in self.scored("pending")}
        acked.update(self.scored("sent"))
        ids = sorted(acked)
        rows = self.hmget(("rec", "pay"), ids)
        return [
            (record, acked[id_])
            for id_, (raw, payload) in zip(ids, rows, strict=True)
            if (record := readable(raw, payload)) is not None
        ]

    def scored(self, name: str, stop: int = -1) -> list[tuple[int, float]]:
        """Members (ids) and scores of a sorted set, lowest score first, up to index ``stop``."""
        found = self._gate.call(
            lambda: self._redis.zrange(self._key_of[name], 0, stop, withscores=True)
        )
        return [(int(member), float(score)) for member, score in cast("list[Any]", found)]

    def hmget(self, hashes: Sequence[str], ids: Sequence[int]) -> list[tuple[Any, ...]]:
        """The values of ``ids`` in each hash, a tuple per id (1,000 ids a round trip)."""
        columns: list[list[Any]] = []
        for name in hashes:
            values: list[Any] = []
            for start in range(0, len(ids), 1000):
                values += self._gate.call(
                    functools.partial(
                        self._redis.hmget, self._key_of[name], ids[start : start + 1000]
                    )
                )
            columns.append(values)
        return list(zip(*columns, strict=True))

    def dead_letters(self, limit: int) -> list[DeadLetter]:
        """The oldest ``limit`` dead letters Redis holds."""
        letters: list[DeadLetter] = []
        ids_at = self.scored("dead", limit - 1)
        rows = self.hmget(("rec", "pay", "dinfo"), [id_ for id_, _ in ids_at])
        for (id_, dead_at), (raw, payload, info) in zip(ids_at, rows, strict=True):
            if info:
                reason, attempts, stamped = json.loads(info)
                record = readable(raw, payload) or unreadable_record(
                    (raw or b"").decode(errors="replace").partition("\n")[0],
                    "?",
                    float(stamped),
                    (payload or b"").decode(errors="replace"),
                )
                letters.append(DeadLetter(id_, record, reason, dead_at, attempts))
        return letters
