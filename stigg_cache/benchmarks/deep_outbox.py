"""Rows 25-26: report_event's p99 and the drain rate over a deep outbox."""

from __future__ import annotations

import time
from pathlib import Path

from stigg_cache.benchmarks._common import Row, Sizes, _p99, _row
from stigg_cache.client import ResilientClient
from stigg_cache.testing.account import FakeAccount
from stigg_cache.testing.fake import FakeStigg
from stigg_cache.testing.inside import stop_sending


def bench_deep_outbox(sizes: Sizes, tmp: Path) -> list[Row]:
    """Rows 25-26: report_event's p99 and the drain rate over a deep outbox.

    Row 25's calls alternate one by one (deep, empty); each round of
    ``sizes.deep_calls`` pairs gives a p99 of each side, and their ratio.
    """
    calls, rounds = sizes.deep_calls, sizes.slow_rounds
    deep, empty, drained = deep_outbox(
        tmp, sizes.deep_events, calls * rounds, sizes.deep_drain_s, sizes.drain_rate
    )
    p99s = [
        (_p99(deep[n * calls : (n + 1) * calls]), _p99(empty[n * calls : (n + 1) * calls]))
        for n in range(rounds)
    ]
    pending = f"{sizes.deep_events:,} pending events"
    return [
        _row(25, f"report_event p99, {pending} (vs an empty outbox)",
             [mine for mine, _ in p99s], [theirs for _, theirs in p99s], "ms", "<= 2x",
             lambda r: r <= 2),
        Row(26, f"drain rate, {pending} (vs Stigg's {sizes.drain_rate:g}/s)",
            drained * sizes.drain_rate, sizes.drain_rate, "n", drained, ">= 0.95x",
            drained >= 0.95, "one run (vs Stigg's rate)"),
    ]  # fmt: skip


def deep_outbox(
    tmp: Path, depth: int, calls: int, drain_s: float, rate: float
) -> tuple[list[float], list[float], float]:
    """Rows 25-26: ``report_event`` latencies (one event a call) over an outbox holding
    ``depth`` pending events and over an empty one; then the rate at which that deep outbox
    drains to a fake taking ``rate`` events a second, over ``drain_s`` seconds."""
    account = FakeAccount(events_per_second=rate)
    with FakeStigg(api_key="bench-key", account=account) as fake:
        fake.set_mode(fake.mode.DOWN)

        def client(name: str) -> ResilientClient:
            return ResilientClient(
                None, api_key="bench-key", base_url=fake.url,
                store=f"sqlite:///{tmp}/{name}/cache.db", events_per_second=rate,
            )  # fmt: skip

        deep, empty = client("depth-deep"), client("depth-empty")
        for made in (deep, empty):
            stop_sending(made)  # the enqueue alone, first
        for start in range(0, depth, 1_000):
            deep.report_event(
                [{"customer_id": f"c{n % 1_000}", "event_name": "e"}
                 for n in range(start, min(start + 1_000, depth))]
            )  # fmt: skip
        one = [{"customer_id": "c1", "event_name": "e"}]
        latencies: dict[str, list[float]] = {"deep": [], "empty": []}
        for _ in range(calls):
            for name, made in (("deep", deep), ("empty", empty)):
                started = time.perf_counter()
                made.report_event(one)
                latencies[name].append(time.perf_counter() - started)
        empty.close()
        deep.close()
        fake.set_mode(fake.mode.UP)
        draining = client("depth-deep")  # its flusher sends from the deep outbox
        time.sleep(1.0)  # past the first batches: the steady rate
        before, started = len(account.events), time.perf_counter()
        time.sleep(drain_s)
        sent = len(account.events) - before
        elapsed = time.perf_counter() - started
        draining.close()
    return latencies["deep"], latencies["empty"], sent / elapsed / rate
