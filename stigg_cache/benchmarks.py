"""`make bench` / `stigg-cache bench`: every figure a ratio against a baseline run alongside.

Each row times our operation and its baseline in the same process, alternating
rounds so machine noise hits both alike, and reports medians (and p99 over
rounds). Nothing here is a test: this machine is shared and noisy, so the suite
only smoke-runs it with tiny sizes.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
import traceback
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import attrs

from stigg_cache import benchmarks_l1, benchmarks_outage
from stigg_cache._clock import SYSTEM_CLOCK
from stigg_cache._codec import encode_snapshot, snapshot_key
from stigg_cache._stigg_json import parse_entitlements, snapshot_to_json
from stigg_cache.aio import AsyncResilientClient
from stigg_cache.client import ResilientClient
from stigg_cache.models import BooleanEntitlement, Decision, FeatureEntitlement, Snapshot, Source
from stigg_cache.stores.base import MISSING, Missing
from stigg_cache.stores.layered import SnapshotCache
from stigg_cache.testing.account import FakeAccount
from stigg_cache.testing.fake import FakeStigg, boolean, metered

API_KEY = "sk-bench-not-a-secret"
FEATURES = 20
CUSTOMERS = 1_000


@attrs.frozen
class Sizes:
    """How much work each row does; ``tiny`` keeps the smoke test fast."""

    ops: int = 20_000
    rounds: int = 9
    io_ops: int = 300
    memory_entitlements: int = 1_000_000
    drain_events: int = 10_000
    drain_rate: float = 1_000.0
    sdk_calls: int = 200
    worker_customers: int = 400
    startup_records: int = 1_000_000
    l1_requests: int = 200_000
    l1_customers: int = 700
    l1_budget: int = 20_000_000
    churn_customers: int = 100_000
    churn_bound: int = 50_000_000
    deep_events: int = 1_000_000
    deep_calls: int = 1_000
    deep_drain_s: float = 10.0
    outage_customers: int = 50_000
    outage_timeout_s: float = 10.0
    rate_customers: int = 5_000
    rate_timeout_s: float = 5.0


TINY = Sizes(
    ops=300,
    rounds=3,
    io_ops=20,
    memory_entitlements=2_000,
    drain_events=300,
    drain_rate=1_000.0,
    sdk_calls=5,
    worker_customers=20,
    startup_records=2_000,
    l1_requests=2_000,
    l1_customers=30,
    l1_budget=500_000,
    churn_customers=500,
    churn_bound=1_000_000,
    deep_events=2_000,
    deep_calls=20,
    deep_drain_s=0.5,
    outage_customers=300,
    outage_timeout_s=1.0,
    rate_customers=100,
    rate_timeout_s=0.5,
)


@attrs.frozen
class Row:
    """One line of the table."""

    number: int
    measure: str
    ours: float
    baseline: float
    unit: str
    ratio: float
    target: str
    passed: bool
    ours_p99: float | None = None
    baseline_p99: float | None = None


def _features(customer: int) -> list[FeatureEntitlement]:
    found: list[FeatureEntitlement] = [
        boolean(f"flag-{n}", granted=(n + customer) % 3 != 0) for n in range(FEATURES - 1)
    ]
    return [*found, metered("api_calls", limit=1_000_000, usage=10)]


def _interleaved(
    ours: Callable[[], float], baseline: Callable[[], float], rounds: int
) -> tuple[list[float], list[float]]:
    """Per-op seconds for each round of each side, rounds alternating."""
    mine: list[float] = []
    theirs: list[float] = []
    ours()
    baseline()  # warm-up
    for _ in range(rounds):
        mine.append(ours())
        theirs.append(baseline())
    return mine, theirs


def _timed(operation: Callable[[int], Any], count: int) -> Callable[[], float]:
    def run() -> float:
        gc.disable()
        try:
            started = time.perf_counter()
            for index in range(count):
                operation(index)
            return (time.perf_counter() - started) / count
        finally:
            gc.enable()

    return run


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


@contextmanager
def _warm_client(tmp: Path, **options: Any) -> Iterator[tuple[ResilientClient, FakeStigg]]:
    with FakeStigg(api_key=API_KEY) as fake:
        for customer in range(CUSTOMERS):
            fake.set_customer(f"c{customer}", _features(customer))
        client = ResilientClient(
            None, api_key=API_KEY, base_url=fake.url, store=f"sqlite:///{tmp}/cache.db", **options
        )
        try:
            for customer in range(CUSTOMERS):
                client.get_entitlements(customer_id=f"c{customer}")
            yield client, fake
        finally:
            client.close()


def _ids(count: int) -> list[tuple[str, str]]:
    return [(f"c{i % CUSTOMERS}", f"flag-{(i * 7) % (FEATURES - 1)}") for i in range(count)]


def bench_checks(sizes: Sizes, tmp: Path) -> list[Row]:
    """Rows 1, 2, 3, 8, 11: warm checks against their baselines."""
    rows: list[Row] = []
    ids = _ids(sizes.ops)
    with _warm_client(tmp) as (client, fake):
        check = client.get_boolean_entitlement

        def ours(i: int) -> object:
            customer, feature = ids[i]
            return check(customer_id=customer, feature_id=feature)

        table = dict.fromkeys(ids, True)
        decision = Decision(Source.CACHE, 1.0, stale=False)

        def baseline(i: int) -> object:
            customer, feature = ids[i]
            return BooleanEntitlement(
                customer_id=customer,
                feature_id=feature,
                resource_id=None,
                has_access=table[(customer, feature)],
                access_denied_reason=None,
                decision=decision,
            )

        mine, theirs = _interleaved(
            _timed(ours, sizes.ops), _timed(baseline, sizes.ops), sizes.rounds
        )
        rows.append(
            _row(
                1, "warm boolean check (L1 hit)", mine, theirs, "us", "<= 2.5x", lambda r: r <= 2.5
            )
        )
        rows.append(_launchdarkly_row(sizes, ids, _timed(ours, sizes.ops)))
        rows.append(_metered_row(client, sizes, _timed(ours, sizes.ops)))
        rows.append(_threads_row(ours, sizes))
        rows.append(_sdk_row(client, fake, sizes))
    return rows


def _row(
    number: int,
    measure: str,
    mine: list[float],
    theirs: list[float],
    unit: str,
    target: str,
    rule: Callable[[float], bool],
    *,
    invert: bool = False,
) -> Row:
    scale = {"us": 1e6, "ms": 1e3, "s": 1.0, "n": 1.0}[unit]
    ours, base = statistics.median(mine), statistics.median(theirs)
    ratio = base / ours if invert else ours / base
    return Row(
        number,
        measure,
        ours * scale,
        base * scale,
        unit,
        ratio,
        target,
        rule(ratio),
        _p99(mine) * scale,
        _p99(theirs) * scale,
    )


def _launchdarkly_row(sizes: Sizes, ids: list[tuple[str, str]], ours: Callable[[], float]) -> Row:
    import ldclient  # noqa: PLC0415 - the bench extra
    from ldclient import Context  # noqa: PLC0415
    from ldclient.config import Config  # noqa: PLC0415
    from ldclient.integrations import Files  # noqa: PLC0415

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "flags.json"
        flags = {
            f"flag-{n}": {
                "key": f"flag-{n}",
                "on": True,
                "variations": [False, True],
                "fallthrough": {"variation": 1},
                "offVariation": 0,
                "version": 1,
                "salt": "s",
                "targets": [],
                "rules": [],
            }
            for n in range(FEATURES)
        }
        path.write_text(json.dumps({"flags": flags}))
        ld = ldclient.client.LDClient(
            Config(
                "sdk-key-bench",
                update_processor_class=Files.new_data_source(paths=[str(path)]),
                send_events=False,
            )
        )
        contexts = {customer: Context.builder(customer).build() for customer, _ in ids}
        pairs = [(contexts[customer], feature) for customer, feature in ids]

        def variation(i: int) -> object:
            context, feature = pairs[i]
            return ld.variation(feature, context, default=False)

        mine, theirs = _interleaved(ours, _timed(variation, len(pairs)), sizes.rounds)
        ld.close()  # type: ignore[no-untyped-call]
    return _row(
        2,
        "warm boolean check vs LaunchDarkly variation()",
        mine,
        theirs,
        "us",
        ">= 4x faster",
        lambda r: r >= 4,
        invert=True,
    )


def _metered_row(client: ResilientClient, sizes: Sizes, boolean_check: Callable[[], float]) -> Row:
    for customer in range(CUSTOMERS):
        client.report_usage(customer_id=f"c{customer}", feature_id="api_calls", value=1)
    check = client.get_metered_entitlement
    customers = [f"c{i % CUSTOMERS}" for i in range(sizes.ops)]  # made before, as the baseline's

    def metered_check(i: int) -> object:
        return check(customer_id=customers[i], feature_id="api_calls")

    mine, theirs = _interleaved(_timed(metered_check, sizes.ops), boolean_check, sizes.rounds)
    return _row(
        3, "warm metered check, local usage pending", mine, theirs, "us", "<= 2x", lambda r: r <= 2
    )


def _on_threads(threads: int, share: int, work: Callable[[int], None]) -> float:
    """Seconds per operation when ``threads`` threads, started at once, each run
    ``work(its index)`` of ``share`` operations."""
    barrier = threading.Barrier(threads + 1)

    def run(index: int) -> None:
        barrier.wait()
        work(index)

    workers = [threading.Thread(target=run, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    started = time.perf_counter()
    barrier.wait()
    for worker in workers:
        worker.join()
    return (time.perf_counter() - started) / (share * threads)


def _threads_row(check: Callable[[int], object], sizes: Sizes) -> Row:
    def throughput(threads: int) -> float:
        per_thread = sizes.ops // threads

        def work(_index: int) -> None:
            for i in range(per_thread):
                check(i)

        return _on_threads(threads, per_thread, work)

    eight, one = _interleaved(lambda: throughput(8), lambda: throughput(1), sizes.rounds)
    return _row(
        8,
        "checks from 8 threads (aggregate)",
        eight,
        one,
        "us",
        ">= 0.8x throughput",
        lambda r: r >= 0.8,
        invert=True,
    )


def _sdk_row(client: ResilientClient, fake: FakeStigg, sizes: Sizes) -> Row:
    import stigg  # noqa: PLC0415 - the rest extra

    sdk = stigg.Stigg(api_key=API_KEY, base_url=fake.url, max_retries=0)
    check = client.get_boolean_entitlement

    def ours(i: int) -> object:
        return check(customer_id=f"c{i % CUSTOMERS}", feature_id="flag-1")

    def direct(i: int) -> object:
        return sdk.v1.customers.retrieve_entitlements(f"c{i % CUSTOMERS}")

    mine, theirs = _interleaved(
        _timed(ours, sizes.ops), _timed(direct, sizes.sdk_calls), sizes.rounds
    )
    sdk.close()
    return _row(
        11,
        "warm check vs the official SDK on loopback",
        mine,
        theirs,
        "us",
        ">= 100x faster",
        lambda r: r >= 100,
        invert=True,
    )


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


def bench_report_event(sizes: Sizes, tmp: Path) -> list[Row]:
    """Rows 6, 7 and 13: durable report_event against raw SQLite inserts; consume()."""
    with ResilientClient(
        None,
        api_key=API_KEY,
        base_url="http://127.0.0.1:9",
        store=f"sqlite:///{tmp}/events.db",
        check_timeout=0.05,
    ) as client:
        client._usage.flusher.close()  # measure the enqueue alone: nothing is sent
        db = sqlite3.connect(tmp / "raw-events.db", isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")  # the same durability as our outbox
        db.execute(
            "CREATE TABLE IF NOT EXISTS e (id INTEGER PRIMARY KEY, key TEXT UNIQUE, payload TEXT)"
        )
        counter = iter(range(10**9))
        rows = [
            _events_row(client, db, sizes, counter, per_call=1),
            _events_row(client, db, sizes, counter, per_call=1_000),
            _consume_row(client, sizes, counter),
        ]
        db.close()
    return rows


def _events_row(
    client: ResilientClient,
    db: sqlite3.Connection,
    sizes: Sizes,
    counter: Iterator[int],
    *,
    per_call: int,
) -> Row:
    """Row 6 (one event a call) or 7 (1,000): ours against raw inserts, as durable."""
    payload = json.dumps({"customerId": "c1", "eventName": "api.request"})

    def ours(i: int) -> object:
        n = next(counter)
        return client.report_event(
            [
                {"customer_id": "c1", "event_name": "api.request", "idempotency_key": f"b{n}-{j}"}
                for j in range(per_call)
            ]
        )

    def raw(i: int) -> None:
        n = next(counter)
        db.execute("BEGIN")
        db.executemany(
            "INSERT INTO e (key, payload) VALUES (?, ?)",
            [(f"r{n}-{j}", payload) for j in range(per_call)],
        )
        db.execute("COMMIT")

    calls = sizes.io_ops if per_call == 1 else max(3, sizes.io_ops // 30)
    mine, theirs = _interleaved(_timed(ours, calls), _timed(raw, calls), sizes.rounds)
    if per_call == 1:
        return _row(
            6, "report_event, 1 event per call, durable", mine, theirs, "us",
            ">= 0.5x rate", lambda r: r >= 0.5, invert=True,
        )  # fmt: skip
    return _row(
        7, "report_event, 1,000 events per call", mine, theirs, "ms",
        ">= 0.5x rate", lambda r: r >= 0.5, invert=True,
    )  # fmt: skip


def _consume_row(client: ResilientClient, sizes: Sizes, counter: Iterator[int]) -> Row:
    """Row 13: consume() (a check and an enqueue in one transaction) against report_usage."""

    def consume(i: int) -> object:
        return client.consume("c1", "api_calls", 1, idempotency_key=f"u{next(counter)}")

    def report(i: int) -> object:
        n = next(counter)
        return client.report_usage(
            customer_id="c1", feature_id="api_calls", value=1, idempotency_key=f"u{n}"
        )

    mine, theirs = _interleaved(
        _timed(consume, sizes.io_ops), _timed(report, sizes.io_ops), sizes.rounds
    )
    return _row(
        13, "consume(), 1 unit, durable (vs report_usage)", mine, theirs, "us",
        ">= 0.5x rate", lambda r: r >= 0.5, invert=True,
    )  # fmt: skip


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
            filling._usage.flusher.close()
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
            busy, idle = _statuses(big.status, small.status)
    pending = f"{sizes.startup_records:,} pending usage records"
    return [
        _row(15, f"constructor, {pending}", mine, theirs, "ms", "<= 2x", lambda r: r <= 2),
        Row(16, f"memory after constructor, {pending}", more, less, "MB", more / less,
            "<= +50 MB", more - less <= 50),
        _row(23, f"status(), {pending} and as many snapshots (SQLite)", busy, idle, "ms",
             "<= 5 ms", lambda _: statistics.median(busy) <= 0.005),
    ]  # fmt: skip


def _statuses(
    busy: Callable[[], object], idle: Callable[[], object]
) -> tuple[list[float], list[float]]:
    """Seconds per ``status()`` of a full store and of an empty one, rounds alternating."""
    return _interleaved(_timed(lambda _: busy(), 50), _timed(lambda _: idle(), 50), 5)


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


def bench_l1(sizes: Sizes, tmp: Path) -> list[Row]:
    """Rows 17-22: L1's hit rates beside plain LRU's; the memory it holds against its budget;
    a store swept of old snapshots, and bounded under churn."""
    rows = [
        Row(number, measure, ours, lru, "%", ours / lru if lru else ours, target, met)
        for number, measure, ours, lru, target, met in benchmarks_l1.bench_hit_rates(
            sizes.l1_requests
        )
    ]
    held = benchmarks_l1.l1_memory(tmp, sizes.l1_customers, sizes.l1_budget)
    ratio = held / sizes.l1_budget
    rows.append(
        Row(20, "memory L1 holds, every feature checked (vs l1_max_bytes)", held / 1e6,
            sizes.l1_budget / 1e6, "MB", ratio, "<= 1.3x", ratio <= 1.3)
    )  # fmt: skip
    left, size = benchmarks_l1.store_churn(tmp, sizes.churn_customers, sizes.churn_bound)
    rows.append(
        Row(21, "snapshots past max_staleness swept (of 1,000)", 1_000 - left, 1_000, "n",
            (1_000 - left) / 1_000, "all (none left)", left == 0)
    )  # fmt: skip
    rows.append(
        Row(22, f"SQLite file, {sizes.churn_customers:,} customers' churn (vs store_max_bytes)",
            size * sizes.churn_bound / 1e6, sizes.churn_bound / 1e6, "MB", size, "<= 1.1x",
            size <= 1.1)
    )  # fmt: skip
    return rows + bench_deep_outbox(sizes, tmp)


def bench_deep_outbox(sizes: Sizes, tmp: Path) -> list[Row]:
    """Rows 25-26: report_event's p99 and the drain rate over a deep outbox."""
    deep, empty, drained = benchmarks_l1.deep_outbox(
        tmp, sizes.deep_events, sizes.deep_calls, sizes.deep_drain_s, sizes.drain_rate
    )
    p99, base = _p99(deep) * 1e3, _p99(empty) * 1e3
    pending = f"{sizes.deep_events:,} pending events"
    return [
        Row(25, f"report_event p99, {pending} (vs an empty outbox)", p99, base, "ms",
            p99 / base, "<= 2x", p99 <= 2 * base),
        Row(26, f"drain rate, {pending} (vs Stigg's {sizes.drain_rate:g}/s)",
            drained * sizes.drain_rate, sizes.drain_rate, "n", drained, ">= 0.95x",
            drained >= 0.95),
    ]  # fmt: skip


def bench_outage(sizes: Sizes, tmp: Path) -> list[Row]:
    """Rows 27-29: reconciliation of a big outage by its deadline, its refresh rate with
    pacing off, and status() of a client on a full Redis (none without a Redis)."""
    customers, timeout_s = sizes.outage_customers, sizes.outage_timeout_s
    took, report = benchmarks_outage.reconcile_outage(
        API_KEY, tmp, customers, timeout_s, reads_per_minute=None
    )
    covered = report.decisions_checked == customers and not report.decisions_dropped
    ours, serial = benchmarks_outage.refresh_rates(
        API_KEY, tmp, sizes.rate_customers, sizes.rate_timeout_s
    )
    rows = [
        Row(27, f"reconcile(timeout={timeout_s:g}), {customers:,}-customer outage", took,
            timeout_s, "s", took / timeout_s, "<= timeout+1s, all",
            took <= timeout_s + 1 and covered),
        Row(28, "refreshes/s, pacing off (vs one at a time)", ours, serial, "n",
            ours / serial, ">= 4x", ours >= 4 * serial),
    ]  # fmt: skip
    status = benchmarks_outage.redis_status(API_KEY, tmp, sizes.startup_records, _statuses)
    if status is not None:
        busy, idle = status
        rows.append(
            _row(29, f"status(), {sizes.startup_records:,} pending and snapshots (Redis)",
                 busy, idle, "ms", "<= 5 ms", lambda _: statistics.median(busy) <= 0.005)
        )  # fmt: skip
    return rows


def bench_worker_reads(sizes: Sizes, tmp: Path) -> Row:
    """Row 14: Stigg reads of 8 forked workers checking the same customers, against one process."""
    customers = [f"w{n}" for n in range(sizes.worker_customers)]
    with FakeStigg(api_key=API_KEY) as fake:
        for customer in customers:
            fake.set_customer(customer, [boolean("sso")])
        reads = []
        for workers in (8, 1):
            before = fake.entitlement_requests()
            with ResilientClient(
                None, api_key=API_KEY, base_url=fake.url, store=f"sqlite:///{tmp}/w{workers}.db",
                check_timeout=2.0, fetch_concurrency=64,
            ) as client:  # fmt: skip
                _in_workers(workers, lambda: _check_each(client, customers))
            reads.append(float(fake.entitlement_requests() - before))
    return _row(
        14, "Stigg reads, 8 forked workers (vs 1 process)", [reads[0]], [reads[1]], "n",
        "<= 1.2x", lambda r: r <= 1.2,
    )  # fmt: skip


def _check_each(client: ResilientClient, customers: list[str]) -> None:
    """Every customer once, eight threads at a time (each worker in its own order)."""
    order = sorted(customers, key=lambda c: hash((os.getpid(), c)))
    threads = [
        threading.Thread(
            target=lambda part=order[n::8]: [
                client.get_boolean_entitlement(customer_id=c, feature_id="sso") for c in part
            ]
        )
        for n in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def _in_workers(workers: int, work: Callable[[], None]) -> None:
    """Run ``work`` in ``workers`` forked children of one client (``gunicorn --preload``)."""
    if workers == 1:
        work()
        return
    pids = []
    for _ in range(workers):
        pid = os.fork()
        if pid == 0:  # a worker: never return into the benchmark
            code = 0
            try:
                work()
            except BaseException:
                traceback.print_exc()  # the parent raises; this says why
                code = 1
            os._exit(code)
        pids.append(pid)
    failed = sum(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) != 0 for pid in pids)
    if failed:
        raise RuntimeError(f"{failed} of {workers} forked workers failed: the row means nothing")


def bench_memory(sizes: Sizes) -> Row:
    """Row 9: bytes held in L1 for N entitlements against the same data as parsed JSON."""
    per_customer = FEATURES
    customers = sizes.memory_entitlements // per_customer
    now = time.time()
    features = _features(7)
    bodies = [
        _response_json(Snapshot(f"c{i}", None, {f.feature_id: f for f in features}, now))
        for i in range(min(customers, 50))
    ]

    def measure(build: Callable[[], object]) -> float:
        gc.collect()
        tracemalloc.start()
        held = build()
        size = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        del held
        return float(size)

    def parsed_json() -> object:
        return [json.loads(bodies[i % len(bodies)]) for i in range(customers)]

    def l1() -> object:
        cache = SnapshotCache(  # every customer held: no bound binds
            _DiscardingStore(), SYSTEM_CLOCK, lambda *_: None, max_entries=customers,
            max_bytes=2**62,
        )  # fmt: skip
        for i in range(customers):
            data = json.loads(bodies[i % len(bodies)])["data"]
            cache.put(
                parse_entitlements(data, customer_id=f"c{i}", resource_id=None, fetched_at=now), now
            )
        return cache

    ours = measure(l1)
    theirs = measure(parsed_json)
    ratio = ours / theirs
    return Row(
        9,
        f"L1 bytes for {customers * per_customer:,} entitlements",
        ours / 1e6,
        theirs / 1e6,
        "MB",
        ratio,
        "<= 0.6x bytes",
        ratio <= 0.6,
    )


def bench_drain(sizes: Sizes, tmp: Path) -> Row:
    """Row 10: draining a backlog against the fake at Stigg's rate limit."""
    account = FakeAccount(events_per_second=sizes.drain_rate)
    with FakeStigg(api_key=API_KEY, account=account) as fake:
        fake.set_mode(fake.mode.DOWN)
        with ResilientClient(
            None,
            api_key=API_KEY,
            base_url=fake.url,
            store=f"sqlite:///{tmp}/drain.db",
            events_per_second=sizes.drain_rate,
        ) as client:
            for start in range(0, sizes.drain_events, 1_000):
                client.report_event(
                    [
                        {"customer_id": "c1", "event_name": "e", "idempotency_key": f"d{n}"}
                        for n in range(start, min(start + 1_000, sizes.drain_events))
                    ]
                )
            fake.set_mode(fake.mode.UP)
            started = time.perf_counter()
            client.flush(timeout=120)
            elapsed = time.perf_counter() - started
    ideal = sizes.drain_events / sizes.drain_rate
    delivered = len(account.events) == sizes.drain_events
    ratio = elapsed / ideal
    return Row(
        10,
        f"outbox drain, {sizes.drain_events:,} events at {sizes.drain_rate:g}/s",
        elapsed,
        ideal,
        "s",
        ratio,
        "<= 1.05x ideal",
        delivered and ratio <= 1.05,
    )


class _DiscardingStore:
    """An L2 that keeps nothing, so only L1 is measured."""

    def get(self, key: str) -> Missing:
        del key
        return MISSING

    def put(self, key: str, value: bytes) -> None:
        del key, value

    def delete(self, key: str) -> None:
        del key

    def keys(self, prefix: str = "") -> Iterator[str]:
        del prefix
        return iter(())

    def close(self) -> None:
        """Nothing to release."""


def bench_async_check(sizes: Sizes, tmp: Path) -> Row:
    """Row 12: an awaited warm check of AsyncResilientClient against the same check, blocking.

    Both go through one client, so they read the same L1: the difference is
    the coroutine and the memory-only guard around the same orchestrator.
    """
    ids = _ids(sizes.ops)
    loop = asyncio.new_event_loop()
    with FakeStigg(api_key=API_KEY) as fake:
        for customer in range(CUSTOMERS):
            fake.set_customer(f"c{customer}", _features(customer))

        async def build() -> AsyncResilientClient:
            client = AsyncResilientClient(
                None, api_key=API_KEY, base_url=fake.url, store=f"sqlite:///{tmp}/async.db"
            )
            for customer in range(CUSTOMERS):
                await client.get_entitlements(customer_id=f"c{customer}")
            return client

        client = loop.run_until_complete(build())
        awaited, blocking = client.get_boolean_entitlement, client._core.get_boolean_entitlement

        async def awaited_checks() -> float:
            gc.disable()
            try:
                started = time.perf_counter()
                for customer, feature in ids:
                    await awaited(customer_id=customer, feature_id=feature)
                return (time.perf_counter() - started) / len(ids)
            finally:
                gc.enable()

        def blocking_check(i: int) -> object:
            customer, feature = ids[i]
            return blocking(customer_id=customer, feature_id=feature)

        try:
            mine, theirs = _interleaved(
                lambda: loop.run_until_complete(awaited_checks()),
                _timed(blocking_check, sizes.ops),
                sizes.rounds,
            )
        finally:
            loop.run_until_complete(client.aclose())
            loop.close()
    return _row(
        12,
        "awaited warm check (AsyncResilientClient)",
        mine,
        theirs,
        "us",
        "<= 2x",
        lambda r: r <= 2,
    )


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
    }


def run(sizes: Sizes) -> list[Row]:
    """Every row, in table order."""
    with tempfile.TemporaryDirectory(prefix="stigg-cache-bench-") as folder:
        tmp = Path(folder)
        rows = bench_checks(sizes, tmp)
        rows += bench_first_check(sizes, tmp)
        rows += bench_report_event(sizes, tmp)
        rows.append(bench_memory(sizes))
        rows.append(bench_drain(sizes, tmp))
        rows.append(bench_async_check(sizes, tmp))
        rows.append(bench_worker_reads(sizes, tmp))
        rows += bench_startup(sizes, tmp)
        rows += bench_l1(sizes, tmp)
        rows += bench_outage(sizes, tmp)
    return sorted(rows, key=lambda row: row.number)


def table(rows: list[Row]) -> str:
    """The rows as a fixed-width table."""
    header = f"{'#':>2}  {'measure':<48} {'ours':>10} {'baseline':>10}  {'ratio':>7}  target"
    lines = [header, "-" * 108]
    lines += [
        f"{row.number:>2}  {row.measure:<48} {row.ours:>8.2f}{row.unit:>2} "
        f"{row.baseline:>8.2f}{row.unit:>2}  {row.ratio:>6.2f}x  {row.target:<18} "
        f"{'pass' if row.passed else 'FAIL'}"
        for row in rows
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Print the table, write JSON; exit 0 whatever the figures (benchmarks inform)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="bench/results.json", help="where to write the JSON")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes: a smoke run")
    args = parser.parse_args(argv)
    rows = run(TINY if args.tiny else Sizes())
    print(table(rows))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(
        json.dumps({"machine": machine(), "rows": [attrs.asdict(row) for row in rows]}, indent=2)
    )
    print(f"\n{sum(r.passed for r in rows)} of {len(rows)} targets met; JSON in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
