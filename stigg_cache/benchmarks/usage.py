"""Rows 6, 7, 10 and 13: durable usage against raw SQLite inserts; consume(); the drain rate."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

from stigg_cache.benchmarks._common import (
    API_KEY,
    EVERY,
    Row,
    Sizes,
    Wanted,
    _interleaved,
    _row,
    _timed,
)
from stigg_cache.client import ResilientClient
from stigg_cache.testing.account import FakeAccount
from stigg_cache.testing.fake import FakeStigg
from stigg_cache.testing.inside import stop_sending


def bench_report_event(sizes: Sizes, tmp: Path, wanted: Wanted = EVERY) -> list[Row]:
    """Rows 6, 7 and 13 (those ``wanted``): durable report_event against raw SQLite
    inserts; consume()."""
    with ResilientClient(
        None,
        api_key=API_KEY,
        base_url="http://127.0.0.1:9",
        store=f"sqlite:///{tmp}/events.db",
        check_timeout=0.05,
    ) as client:
        stop_sending(client)  # measure the enqueue alone: nothing is sent
        db = sqlite3.connect(tmp / "raw-events.db", isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")  # the same durability as our outbox
        db.execute(
            "CREATE TABLE IF NOT EXISTS e (id INTEGER PRIMARY KEY, key TEXT UNIQUE, payload TEXT)"
        )
        counter = iter(range(10**9))
        rows = [
            *([_events_row(client, db, sizes, counter, per_call=1)] if wanted(6) else []),
            *([_events_row(client, db, sizes, counter, per_call=1_000)] if wanted(7) else []),
            *([_consume_row(client, sizes, counter)] if wanted(13) else []),
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
            [
                (f"r{n}-{j}", json.dumps({"customerId": "c1", "eventName": "api.request"}))
                for j in range(per_call)
            ],
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
        ">= 0.6x rate", lambda r: r >= 0.6, invert=True,
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
        "one run (vs the ideal)",
    )
