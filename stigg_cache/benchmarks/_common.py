"""What every row shares: sizes, the row itself, timing and alternating rounds."""

from __future__ import annotations

import gc
import os
import statistics
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs

from stigg_cache.client import ResilientClient
from stigg_cache.models import FeatureEntitlement
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
    """One line of the table.

    ``judged``: whether ``passed`` means anything (not at tiny sizes: a smoke run's
    figures are noise).
    """

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
    judged: bool = True

    @property
    def verdict(self) -> str:
        """``pass``, ``FAIL`` or ``not judged``, as the table shows it."""
        if not self.judged:
            return "not judged"
        return "pass" if self.passed else "FAIL"


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
