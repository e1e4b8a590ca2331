"""The host's journal of offline decisions in Redis (``SharedJournal``).

Two hashes under the outbox's hash tag (one slot for the scripts): kinds of
decision (``count first last chars`` by key), and the journal's characters and
the count of decisions its bound kept out. Adding and taking are scripts, so
processes adding and reconciling at once never lose or repeat a decision. While
Redis is unreachable the gate raises ``StoreError``: each process keeps its own
decisions and adds them once it answers again.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib.resources import files
from typing import Any

import redis

from stigg_cache.core.reconcile import JournalRow
from stigg_cache_redis._connection import Gate


def _script(name: str) -> str:
    return (files("stigg_cache_redis") / f"{name}.lua").read_text(encoding="utf-8")


class RedisJournal:
    """The journal's keys and scripts for one namespace."""

    def __init__(self, client: redis.Redis, tag: str, gate: Gate) -> None:
        self._keys = [f"{tag}:journal:kinds", f"{tag}:journal:meta"]
        self._gate = gate
        self._add = client.register_script(_script("journal_add"))
        self._take = client.register_script(_script("journal_take"))

    def add(self, rows: Sequence[JournalRow], uncovered: int, *, size: int, chars: int) -> None:
        """Count ``rows`` in, within ``size`` kinds and ``chars`` characters."""
        args: list[Any] = [size, chars, uncovered]
        for key, count, first_at, last_at, held in rows:
            args += [key, count, repr(first_at), repr(last_at), held]
        self._gate.call(lambda: self._add(keys=self._keys, args=args))

    def take(self) -> tuple[list[JournalRow], int]:
        """Every kind, and how many decisions were not covered; the journal empties."""
        taken = self._gate.call(lambda: self._take(keys=self._keys, args=[]))
        uncovered, flat = int(taken[0]), taken[1:]
        rows: list[JournalRow] = []
        for key, value in zip(flat[::2], flat[1::2], strict=True):
            count, first_at, last_at, held = value.decode().split(" ")
            rows.append((key.decode(), int(count), float(first_at), float(last_at), int(held)))
        return rows, uncovered
