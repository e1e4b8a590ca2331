"""Rows 24a and 24b: cold checks (an empty L1, every snapshot in one SQLite store) from
several processes and from several threads.

Row 24a forks 4 workers of one client (``gunicorn --preload``), each checking its own
quarter of the customers, against one such worker checking them all: throughput,
whose limit is the machine's cores (2x on the 2-core development machine). Row 24b
runs a client's cold checks from 8 threads over its own 1-thread figure, against the
same for raw ``sqlite3`` point reads plus ``json.loads`` of Stigg's response (a
connection per thread, as our store's reads have): on CPython 3.11 the GIL keeps
either under one thread's throughput, so the row asks that ours scales as raw reads do.
The threads take the customers from one queue (a server's threads, its requests).

The client is set up as a host's workers run one: a SQLite store and the outbox beside
it (the default). A worker's first check of a customer also reads the customer's pending
usage from that outbox: row 24a's forked workers make such first checks in every round.
Row 24b's client keeps what it read (a worker whose L1 let a customer go has read its
usage before): its warm-up round reads each customer's, and the timed rounds are checks
of customers not in L1 whose usage is known, one store read each, as the baseline's.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from stigg_cache.benchmarks._common import (
    API_KEY,
    EVERY,
    Row,
    Sizes,
    Wanted,
    _alternated,
    _features,
    _interleaved,
    _on_threads,
    _plant,
    _row,
)
from stigg_cache.benchmarks._forked import _in_processes
from stigg_cache.benchmarks.first_check import _response_json
from stigg_cache.client import ResilientClient
from stigg_cache.models import BooleanEntitlement, Snapshot, Source
from stigg_cache.policy import FallbackPolicy, Staleness
from stigg_cache.stores import encode_snapshot, snapshot_key
from stigg_cache.testing.inside import forget_memory

PROCESSES = 4  # twice the development machine's cores: the OS, not the GIL, shares them


# The planted snapshots stay fresh however long the rows take (on a loaded machine, past
# the default minute): a cold check reads the store and answers, and never asks Stigg.
FRESH_ALL_ROW = FallbackPolicy(staleness=Staleness(fresh_for_s=3_600, max_staleness_s=86_400))


THREADS = 8


Check = Callable[[str], object]  # one cold check of a customer


def bench_cold(sizes: Sizes, tmp: Path, wanted: Wanted = EVERY) -> list[Row]:
    """Rows 24a and 24b (those ``wanted``) over ``sizes.cold_customers`` customers'
    snapshots in SQLite."""
    customers = [f"cold-{n}" for n in range(sizes.cold_customers)]
    warm_ups = [f"warm-up-{n}" for n in range(PROCESSES)]  # a worker's first check: untimed
    raw = _raw_store(tmp, customers + warm_ups)
    url = f"sqlite:///{tmp}/cold.db"
    with ResilientClient(
        None, api_key=API_KEY, base_url="http://127.0.0.1:9", store=url, policy=FRESH_ALL_ROW
    ) as client:
        _plant(  # in the store alone, not in this client's memory: workers inherit none
            url,
            {
                snapshot_key(customer, None): encode_snapshot(_snapshot(customer))
                for customer in customers + warm_ups
            },
        )

        def check(customer: str) -> BooleanEntitlement:
            return client.get_boolean_entitlement(customer_id=customer, feature_id="flag-1")

        answer = check(warm_ups[0])
        if answer.decision.source is not Source.CACHE:  # what the row times, or it means nothing
            raise RuntimeError(f"a cold check answered {answer.decision}, not from the store")

        forget_memory(client)  # each worker forked from here starts with nothing in L1
        rows = [_processes_row(sizes, customers, warm_ups, check)] if wanted(24, "a") else []

        def ours(threads: int) -> float:
            forget_memory(client)
            return _cold_on_threads(threads, customers, lambda _thread, customer: check(customer))

        if wanted(24, "b"):
            rows.append(_threads_row(sizes, customers, ours, raw))
        if client.status().last_error is not None:  # a check asked Stigg: not a cold check
            raise RuntimeError(f"the cold rows reached for Stigg: {client.status().last_error}")
    for db in raw:
        db.close()
    return rows


def _snapshot(customer: str) -> Snapshot:
    return Snapshot(customer, None, {f.feature_id: f for f in _features(1)}, time.time())


def _processes_row(sizes: Sizes, customers: list[str], warm_ups: list[str], check: Check) -> Row:
    """Row 24a: cold checks from 4 forked workers against 1 (seconds per check, each round)."""

    def in_processes(workers: int) -> float:
        share = len(customers) // workers

        def work(index: int) -> None:
            for customer in customers[index * share : (index + 1) * share]:
                check(customer)

        return _in_processes(workers, lambda index: check(warm_ups[index]), work) / (
            share * workers
        )

    four, one = _interleaved(lambda: in_processes(PROCESSES), lambda: in_processes(1), sizes.rounds)
    return _row(
        24, f"first checks from SQLite, {PROCESSES} forked processes (vs 1)", four, one, "us",
        ">= 1.7x throughput", lambda r: r >= 1.7, invert=True, part="a",
    )  # fmt: skip


def _threads_row(
    sizes: Sizes,
    customers: list[str],
    ours: Callable[[int], float],
    raw: list[sqlite3.Connection],
) -> Row:
    """Row 24b: our throughput from 8 threads over 1 thread's, against raw reads' same ratio."""

    def raw_read(thread: int, customer: str) -> object:
        (row,) = raw[thread].execute("SELECT value FROM t WHERE key = ?", (customer,)).fetchall()
        return json.loads(row[0])

    def raw_reads(threads: int) -> float:
        return _cold_on_threads(threads, customers, raw_read)

    ours_1, ours_8, raw_1, raw_8 = _alternated(
        (lambda: ours(1), lambda: ours(THREADS), lambda: raw_reads(1), lambda: raw_reads(THREADS)),
        sizes.rounds,
    )
    ours_scaling = [one / many for one, many in zip(ours_1, ours_8, strict=True)]
    raw_scaling = [one / many for one, many in zip(raw_1, raw_8, strict=True)]
    return _row(
        24, f"{THREADS} threads over 1, cold checks (vs raw sqlite3's)", ours_scaling,
        raw_scaling, "x", ">= 0.9x raw's", lambda r: r >= 0.9, part="b",
    )  # fmt: skip


def _cold_on_threads(
    threads: int, customers: list[str], read: Callable[[int, str], object]
) -> float:
    """Seconds per read when ``threads`` threads ``read(thread, customer)`` the customers,
    each taking the next one from a queue they share, as a server's threads take requests.

    Not a fixed share each: the GIL is not fair, and the thread it favoured finished its
    share at 66-94 % of the run; the rest of the run had fewer than ``threads`` threads
    (fewer hand-offs), a part of it that varied by the round.
    """
    share = len(customers) // threads
    queue = iter(customers[: share * threads])  # next() on a list's iterator is atomic

    def work(index: int) -> None:
        for customer in queue:
            read(index, customer)

    return _on_threads(threads, share, work)


def _raw_store(tmp: Path, customers: list[str]) -> list[sqlite3.Connection]:
    """Row 24b's baseline: the customers' snapshots as Stigg's JSON responses in a plain
    SQLite table (WAL, as ours); one connection for each thread."""
    path = tmp / "cold-raw.db"
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE IF NOT EXISTS t (key TEXT PRIMARY KEY, value BLOB)")
        db.executemany(
            "INSERT OR REPLACE INTO t VALUES (?, ?)",
            ((customer, _response_json(_snapshot(customer)).encode()) for customer in customers),
        )
    db.close()
    return [
        sqlite3.connect(path, isolation_level=None, check_same_thread=False) for _ in range(THREADS)
    ]
