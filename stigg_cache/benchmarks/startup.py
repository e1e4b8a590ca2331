"""Rows 15, 16 and 23: start-up and status() over a million pending records and snapshots."""

from __future__ import annotations

import gc
import sqlite3
import statistics
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

from stigg_cache.benchmarks._common import (
    API_KEY,
    BYTES,
    OUR_MEDIAN,
    Row,
    Sizes,
    _interleaved,
    _row,
    _timed,
)
from stigg_cache.client import ResilientClient
from stigg_cache.stores import snapshot_key
from stigg_cache.testing.fake import FakeStigg
from stigg_cache.testing.inside import stop_sending


def bench_startup(sizes: Sizes, tmp: Path) -> list[Row]:
    """Rows 15, 16 and 23: building a client over a deep outbox of usage, against an empty
    one; its status() with as many snapshots in the store."""
    deep, empty = tmp / "startup-deep", tmp / "startup-empty"
    with FakeStigg(api_key=API_KEY) as fake:
        fake.set_mode(fake.mode.DOWN)  # the usage stays pending

        def client(folder: Path) -> ResilientClient:
            return ResilientClient(
                None, api_key=API_KEY, base_url=fake.url, store=f"sqlite:///{folder}/cache.db"
            )

        with client(deep) as filling:
            stop_sending(filling)
            for start in range(0, sizes.startup_records, 10_000):
                filling.report_usage_bulk(
                    [
                        {"customer_id": f"c{n % 10_000}", "feature_id": "api_calls", "value": 1}
                        for n in range(start, min(start + 10_000, sizes.startup_records))
                    ]
                )
        client(empty).close()

        def built(folder: Path) -> Callable[[], float]:
            def run() -> float:
                started = time.perf_counter()
                made = client(folder)
                elapsed = time.perf_counter() - started
                made.close()
                return elapsed

            return run

        def held(folder: Path) -> float:
            gc.collect()
            tracemalloc.start()
            made = client(folder)
            size = tracemalloc.get_traced_memory()[0]
            tracemalloc.stop()
            made.close()
            return size / 1e6

        mine, theirs = _interleaved(built(deep), built(empty), sizes.rounds)
        more = held(deep)
        less = held(empty)
        _plant_snapshots(deep / "cache.db", sizes.startup_records)
        with client(deep) as big, client(empty) as small:
            busy, idle = _statuses(big.status, small.status, sizes.rounds)
    pending = f"{sizes.startup_records:,} pending usage records"
    return [
        _row(15, f"constructor, {pending}", mine, theirs, "ms", "<= 2x", lambda r: r <= 2),
        Row(16, f"memory after constructor, {pending}", more, less, "MB", more / less,
            "<= +50 MB", more - less <= 50, BYTES),
        _row(23, f"status(), {pending} and as many snapshots (SQLite)", busy, idle, "ms",
             "<= 5 ms", lambda _: statistics.median(busy) <= 0.005, basis=OUR_MEDIAN),
    ]  # fmt: skip


def _statuses(
    busy: Callable[[], object], idle: Callable[[], object], rounds: int
) -> tuple[list[float], list[float]]:
    """Seconds per ``status()`` of a full store and of an empty one, rounds alternating."""
    return _interleaved(_timed(lambda _: busy(), 50), _timed(lambda _: idle(), 50), rounds)


def _plant_snapshots(path: Path, count: int) -> None:
    """``count`` snapshot entries in a SQLite store (tiny values: status() counts keys)."""
    with sqlite3.connect(path) as db:
        for start in range(0, count, 100_000):
            db.executemany(
                "INSERT OR REPLACE INTO stigg_cache_entries (key, value, updated_at) "
                "VALUES (?, ?, ?)",
                [
                    (snapshot_key(f"s{n}", None), b"x", time.time())
                    for n in range(start, min(start + 100_000, count))
                ],
            )
