"""Rows 4 and 5: a first check read from the store against raw reads."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from stigg_cache.adapters import snapshot_to_json
from stigg_cache.benchmarks._common import (
    API_KEY,
    EVERY,
    Row,
    Sizes,
    Wanted,
    _features,
    _interleaved,
    _plant,
    _row,
    _timed,
)
from stigg_cache.client import ResilientClient
from stigg_cache.models import Snapshot
from stigg_cache.stores import encode_snapshot, snapshot_key
from stigg_cache.testing.inside import forget_memory


def bench_first_check(sizes: Sizes, tmp: Path, wanted: Wanted = EVERY) -> list[Row]:
    """Rows 4 and 5 (those ``wanted``): the first check of a customer in a new process, from L2.

    "New process" is an empty L1 in front of a store holding the snapshot;
    the baselines hold the same snapshot as Stigg's JSON response, read it raw
    and decode it (for the disk store too: a check cannot answer from
    undecoded bytes).
    """
    snapshot = Snapshot("c-first", None, {f.feature_id: f for f in _features(1)}, time.time())
    value = encode_snapshot(snapshot)
    response = _response_json(snapshot).encode()
    rows = []
    if wanted(4):
        sqlite_reads = _raw_sqlite_reader(tmp, response)
        rows.append(_first_check_row(sizes, tmp, 4, "sqlite", value, sqlite_reads, 2.0))
    if wanted(5):
        disk_reads = _raw_diskcache_reader(tmp, response)
        rows.append(_first_check_row(sizes, tmp, 5, "disk", value, disk_reads, 1.5))
    return rows


def _first_check_row(
    sizes: Sizes,
    tmp: Path,
    number: int,
    scheme: str,
    value: bytes,
    baseline: Callable[[int], object],
    at_most: float,
) -> Row:
    url = f"{scheme}:///{tmp}/{scheme}-first"
    with ResilientClient(
        None, api_key=API_KEY, base_url="http://127.0.0.1:9", store=url, outbox="memory://"
    ) as client:
        _plant(url, {snapshot_key("c-first", None): value})

        def first_check(_: int) -> object:
            forget_memory(client)
            return client.get_boolean_entitlement(customer_id="c-first", feature_id="flag-1")

        mine, theirs = _interleaved(
            _timed(first_check, sizes.io_ops), _timed(baseline, sizes.io_ops), sizes.rounds
        )
    measure = f"first check, snapshot in {scheme} store"
    return _row(number, measure, mine, theirs, "us", f"<= {at_most:g}x", lambda r: r <= at_most)


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
