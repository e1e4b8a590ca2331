"""Rows 4, 5 and 24: a first check read from the store against raw reads; cold checks."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import attrs

from stigg_cache._codec import encode_snapshot, snapshot_key
from stigg_cache._stigg_json import snapshot_to_json
from stigg_cache.benchmarks._common import (
    API_KEY,
    Row,
    Sizes,
    _features,
    _interleaved,
    _on_threads,
    _row,
    _timed,
)
from stigg_cache.client import ResilientClient
from stigg_cache.models import Snapshot


def bench_first_check(sizes: Sizes, tmp: Path) -> list[Row]:
    """Rows 4, 5 and 24: the first check of a customer in a new process, from L2.

    "New process" is an empty L1 in front of a store holding the snapshot;
    the baselines hold the same snapshot as Stigg's JSON response, read it raw
    and decode it (for the disk store too: a check cannot answer from
    undecoded bytes).
    """
    snapshot = Snapshot("c-first", None, {f.feature_id: f for f in _features(1)}, time.time())
    value = encode_snapshot(snapshot)
    response = _response_json(snapshot).encode()
    sqlite_row = _first_check_row(sizes, tmp, "sqlite", value, _raw_sqlite_reader(tmp, response))
    disk_row = _first_check_row(sizes, tmp, "disk", value, _raw_diskcache_reader(tmp, response))
    return [
        attrs.evolve(sqlite_row, number=4, target="<= 2x", passed=sqlite_row.ratio <= 2),
        attrs.evolve(disk_row, number=5, target="<= 1.5x", passed=disk_row.ratio <= 1.5),
        _cold_threads_row(sizes, tmp),
    ]


def _cold_threads_row(sizes: Sizes, tmp: Path) -> Row:
    """Row 24: first checks (empty L1, snapshots in SQLite) from 8 threads against 1."""
    customers = [f"cold-{n}" for n in range(sizes.io_ops * 4)]
    features = {f.feature_id: f for f in _features(1)}
    with ResilientClient(
        None, api_key=API_KEY, base_url="http://127.0.0.1:9", store=f"sqlite:///{tmp}/cold.db",
        outbox="memory://",
    ) as client:  # fmt: skip
        cache = client._cache
        for customer in customers:
            snapshot = Snapshot(customer, None, features, time.time())
            cache.store.put(snapshot_key(customer, None), encode_snapshot(snapshot))
        check = client.get_boolean_entitlement

        def throughput(threads: int) -> float:
            cache.clear_l1()
            share = len(customers) // threads

            def work(index: int) -> None:
                for customer in customers[index * share : (index + 1) * share]:
                    check(customer_id=customer, feature_id="flag-1")

            return _on_threads(threads, share, work)

        eight, one = _interleaved(lambda: throughput(8), lambda: throughput(1), sizes.rounds)
    return _row(
        24, "first checks from SQLite, 8 threads (aggregate)", eight, one, "us",
        ">= 1.0x throughput", lambda r: r >= 1.0, invert=True,
    )  # fmt: skip


def _first_check_row(
    sizes: Sizes, tmp: Path, scheme: str, value: bytes, baseline: Callable[[int], object]
) -> Row:
    url = f"{scheme}:///{tmp}/{scheme}-first"
    with ResilientClient(
        None, api_key=API_KEY, base_url="http://127.0.0.1:9", store=url, outbox="memory://"
    ) as client:
        cache = client._cache
        cache.store.put(snapshot_key("c-first", None), value)

        def first_check(_: int) -> object:
            cache.clear_l1()
            return client.get_boolean_entitlement(customer_id="c-first", feature_id="flag-1")

        mine, theirs = _interleaved(
            _timed(first_check, sizes.io_ops), _timed(baseline, sizes.io_ops), sizes.rounds
        )
    measure = f"first check, snapshot in {scheme} store"
    return _row(0, measure, mine, theirs, "us", "", lambda _: False)


def _response_json(snapshot: Snapshot) -> str:
    """The snapshot as Stigg's REST response: what an application would cache itself."""
    return json.dumps({"data": snapshot_to_json(snapshot, updated_at=datetime.now(UTC))})


def _raw_sqlite_reader(tmp: Path, document: bytes) -> Callable[[int], object]:
    db = sqlite3.connect(tmp / "raw.db", isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE IF NOT EXISTS t (key TEXT PRIMARY KEY, value BLOB)")
    db.execute("INSERT OR REPLACE INTO t VALUES (?, ?)", ("c-first", document))

    def read(_: int) -> object:
        (row,) = db.execute("SELECT value FROM t WHERE key = ?", ("c-first",)).fetchall()
        return json.loads(row[0])

    return read


def _raw_diskcache_reader(tmp: Path, document: bytes) -> Callable[[int], object]:
    import diskcache  # noqa: PLC0415

    cache = diskcache.Cache(str(tmp / "raw-disk"))
    cache.set("c-first", document)
    return lambda _: json.loads(cache.get("c-first"))
