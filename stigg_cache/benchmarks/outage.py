"""Benchmark rows of a big outage: reconciliation's deadline, its refresh rate, and a
Redis store's ``status()``.

Row 27 takes Stigg down, answers one check for each of many customers from the
fallback (each an offline decision), brings Stigg back and times
``reconcile(timeout=...)`` at the default read budget: the report must come by
its deadline (+1 s) and cover every decision. Row 28 runs the same outage with
pacing off against a Stigg that answers in ``STIGG_LATENCY_S``, and compares
the refresh rate with one refresh at a time (how reconciliation refreshed
before #17), in alternated rounds of one outage each. Row 29 asks ``status()``
of a client on Redis holding a million snapshots and a million pending usage
records, against an empty namespace.
"""

from __future__ import annotations

import math
import os
import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from stigg_cache.benchmarks._common import API_KEY, OUR_MEDIAN, Row, Sizes, _interleaved, _row
from stigg_cache.benchmarks.startup import _statuses
from stigg_cache.client import ResilientClient
from stigg_cache.core.breaker import CircuitBreaker
from stigg_cache.core.reconcile import ReconcileReport
from stigg_cache.stores import SNAPSHOT_PREFIX, snapshot_key
from stigg_cache.testing.fake import FakeMode, FakeStigg
from stigg_cache.testing.inside import serial_refreshes, stop_sending


def bench_outage(sizes: Sizes, tmp: Path) -> list[Row]:
    """Rows 27-29: reconciliation of a big outage by its deadline, its refresh rate with
    pacing off, and status() of a client on a full Redis (none without a Redis)."""
    customers, timeout_s = sizes.outage_customers, sizes.outage_timeout_s
    took, report = reconcile_outage(API_KEY, tmp, customers, timeout_s, reads_per_minute=None)
    covered = report.decisions_checked == customers and not report.decisions_dropped
    ours, serial = refresh_rates(
        API_KEY, tmp, sizes.rate_customers, sizes.rate_timeout_s, sizes.slow_rounds
    )
    rows = [
        Row(27, f"reconcile(timeout={timeout_s:g}), {customers:,}-customer outage", took,
            timeout_s, "s", took / timeout_s, "<= timeout+1s, all",
            took <= timeout_s + 1 and covered, "one run (vs the deadline)"),
        _row(28, "refreshes/s, pacing off (vs one at a time)", ours, serial, "n", ">= 4x",
             lambda r: r >= 4),
    ]  # fmt: skip
    status = redis_status(
        API_KEY, tmp, sizes.startup_records, lambda busy, idle: _statuses(busy, idle, sizes.rounds)
    )
    if status is not None:
        busy, idle = status
        rows.append(
            _row(29, f"status(), {sizes.startup_records:,} pending and snapshots (Redis)",
                 busy, idle, "ms", "<= 5 ms", lambda _: statistics.median(busy) <= 0.005,
                 basis=OUR_MEDIAN)
        )  # fmt: skip
    return rows


Timings = tuple[list[float], list[float]]


STIGG_LATENCY_S = 0.02  # a read's round trip to Stigg (a region away)


UNPACED = 1e9  # reads a minute: no budget to wait for


REDIS_URL = os.environ.get("STIGG_CACHE_REDIS_URL", "redis://127.0.0.1:6379/0")
# What row 29 needs, for the line that says it was not measured (never the URL: a
# password may be in it).
REDIS_NEEDS = (
    "the Redis store (pip install ./stores/redis) and a Redis at $STIGG_CACHE_REDIS_URL "
    "(default redis://127.0.0.1:6379/0)"
)


PLANT_BATCH = 10_000


BENCH_PREFIX = "bench"  # of the namespaces row 29 makes (and removes)


SIGNING_KEY = "bench-signing-key-not-a-secret"  # a shared store is signed, as it should be


def reconcile_outage(
    api_key: str, tmp: Path, customers: int, timeout_s: float, *, reads_per_minute: float | None
) -> tuple[float, ReconcileReport]:
    """Seconds ``reconcile(timeout_s)`` took after an outage in which each of ``customers``
    customers was answered once from the fallback, and its report."""
    with FakeStigg(api_key=api_key) as fake:
        folder = tmp / f"outage-{uuid.uuid4().hex[:8]}"
        with ResilientClient(
            None,
            api_key=api_key,
            base_url=fake.url,
            store=f"sqlite:///{folder}/cache.db",
            reads_per_minute=reads_per_minute,
            breaker=CircuitBreaker(failure_threshold=1, base_backoff_s=0.1, max_backoff_s=0.2),
        ) as client:
            fake.set_mode(FakeMode.DOWN)
            for n in range(customers):
                client.get_boolean_entitlement(customer_id=f"c{n}", feature_id="sso")
            fake.set_mode(FakeMode.SLOW, delay_s=STIGG_LATENCY_S)  # back, a region away
            # At once: the reconciliation timed is this one. Once a probe finds Stigg back,
            # one starts by itself (with its own deadline, a minute), and this call would
            # then return None (run 4 of 2026-12-06 timed that one: 60 s). Its first
            # refreshes wait out the breaker's backoff (0.1-0.2 s), then one probes.
            started = time.perf_counter()
            report = client.reconcile(timeout=timeout_s)
            took = time.perf_counter() - started
            if report is None:
                raise RuntimeError(
                    "a reconciliation started by itself before reconcile() was called: "
                    "the row would time that one, not reconcile(timeout=...)"
                )
            return took, report


def refresh_rates(
    api_key: str, tmp: Path, customers: int, timeout_s: float, rounds: int
) -> Timings:
    """Customers refreshed per second with pacing off, in each of ``rounds`` rounds: ours,
    and one refresh at a time."""

    def rate() -> float:
        took, report = reconcile_outage(
            api_key, tmp, customers, timeout_s, reads_per_minute=UNPACED
        )
        return report.customers_refreshed / took

    def serial() -> float:
        with serial_refreshes():
            return rate()

    return _interleaved(rate, serial, rounds, warm_up=False)  # each run is a new client


def redis_status(
    api_key: str,
    tmp: Path,
    count: int,
    measure: Callable[[Callable[[], object], Callable[[], object]], Timings],
) -> Timings | None:
    """``measure(status of a client on Redis with count snapshots and count pending usage
    records, status of one on an empty namespace)``; ``None`` without a Redis or without
    the Redis store installed (``pip install ./stores/redis``; in CI, ``CI=true``, either
    missing raises)."""
    try:  # the Redis store's plugin and its client: not ours, only for this row
        import redis  # noqa: PLC0415

        import stigg_cache_redis  # noqa: F401, PLC0415
    except ImportError:
        if os.environ.get("CI"):
            raise
        return None
    connection = redis.Redis.from_url(REDIS_URL, socket_timeout=5)
    try:
        connection.ping()
    except redis.RedisError:
        if os.environ.get("CI"):
            raise
        return None
    full, empty = f"{BENCH_PREFIX}{uuid.uuid4().hex[:8]}", f"{BENCH_PREFIX}{uuid.uuid4().hex[:8]}"
    try:
        with FakeStigg(api_key=api_key) as fake:
            fake.set_mode(FakeMode.DOWN)  # the usage stays pending

            def client(namespace: str) -> ResilientClient:
                return ResilientClient(
                    None,
                    api_key=api_key,
                    base_url=fake.url,
                    store=f"{REDIS_URL}?namespace={namespace}&local_outbox={tmp}/{namespace}.db",
                    signing_key=SIGNING_KEY,
                )

            with client(full) as filling:
                stop_sending(filling)
                for start in range(0, count, PLANT_BATCH):
                    filling.report_usage_bulk(
                        [
                            {"customer_id": f"c{n}", "feature_id": "api_calls", "value": 1}
                            for n in range(start, min(start + PLANT_BATCH, count))
                        ]
                    )
            _plant_redis_snapshots(connection, full, count)
            with client(full) as big, client(empty) as small:
                return measure(big.status, small.status)
    finally:
        for namespace in (full, empty):  # the outbox's keys are hash-tagged: {stigg-cache:ns}:
            for keys in _batches(connection.scan_iter(bench_keys(namespace), 10_000)):
                connection.unlink(*keys)
        connection.close()


def bench_keys(namespace: str) -> str:
    """A pattern of every key of a namespace: the store's and the outbox's (hash-tagged)."""
    return f"*stigg-cache:{namespace}*"


def _plant_redis_snapshots(connection: Any, namespace: str, count: int) -> None:
    """``count`` snapshot keys (tiny values: status() must not look at them), listed in
    their family's sorted set as the store lists what it writes."""
    pipe = connection.pipeline(transaction=False)
    for n in range(count):
        key = snapshot_key(f"s{n}", None)
        pipe.set(f"stigg-cache:{namespace}:snap:{key}", b"x")
        pipe.zadd(f"stigg-cache:{namespace}:index:{SNAPSHOT_PREFIX}", {key: math.inf})
        if n % PLANT_BATCH == PLANT_BATCH - 1:
            pipe.execute()
    pipe.execute()


def _batches(keys: Iterator[bytes]) -> Iterator[list[bytes]]:
    batch: list[bytes] = []
    for key in keys:
        batch.append(key)
        if len(batch) == PLANT_BATCH:
            yield batch
            batch = []
    if batch:
        yield batch
