"""What every row shares: sizes, the row itself, timing and alternating rounds."""

from __future__ import annotations

import gc
import statistics
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs

from stigg_cache.client import ResilientClient
from stigg_cache.models import FeatureEntitlement
from stigg_cache.stores import open_store
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
    deep_calls: int = 400  # per round and side (a round's p99 is its 4th slowest call)
    deep_drain_s: float = 10.0
    outage_customers: int = 50_000
    outage_timeout_s: float = 10.0
    rate_customers: int = 5_000
    rate_timeout_s: float = 5.0
    cold_customers: int = 8_000
    slow_rounds: int = 5  # rows whose round takes seconds (25, 28)


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
    # 4.5 passes of row 19's round robin: in about one process in fifty a newcomer gets into
    # L1 on the first pass (the sketch counts by hash(), seeded per process), and TinyLFU
    # then misses the whole second pass (each customer back, counted twice, evicts the next
    # one due, counted once) before it recovers; 1.8 passes measured only that (0.0 %).
    l1_requests=5_000,
    l1_customers=30,
    l1_budget=500_000,
    churn_customers=500,
    churn_bound=1_000_000,
    # Row 26's window holds three of the flusher's half-second batches (one window of one
    # batch caught none when a batch came late: "our side did no work", in one CI run),
    # and the outbox stays deep through it (1 s before it, 1.5 s in it, at 1,000/s).
    deep_events=4_000,
    deep_calls=20,
    deep_drain_s=1.5,
    outage_customers=300,
    outage_timeout_s=1.0,
    rate_customers=100,
    rate_timeout_s=0.5,
    cold_customers=80,
    slow_rounds=2,
)


@attrs.frozen
class Wanted:
    """Which rows a run makes (``--rows 3,5,24a``): a row is wanted when its label
    (``3``, ``24a``) or its number (``24``: both of 24a and 24b) is named; nothing named
    is every row."""

    labels: frozenset[str] = frozenset()

    def __call__(self, number: int, part: str = "") -> bool:
        """Whether row ``number`` (part ``part``) is wanted."""
        return not self.labels or str(number) in self.labels or f"{number}{part}" in self.labels


EVERY = Wanted()


@attrs.frozen
class Round:
    """One round of a timed row, in the row's unit: our figure, the baseline's, and the
    ratio the target reads (ours ÷ baseline, or baseline ÷ ours for rates and "faster")."""

    ours: float
    baseline: float
    ratio: float


def _spread(row: Row) -> tuple[float, float] | None:
    ratios = [one.ratio for one in row.rounds]
    return (min(ratios), max(ratios)) if ratios else None


@attrs.frozen
class Row:
    """One line of the table.

    A timed row (ours against a baseline, timed in alternated ``rounds``) is judged on
    the median of its per-round ratios, ``ratio``; ``spread`` is the lowest and highest
    of those ratios, and ``ours`` and ``baseline`` each side's median (shown, not judged).
    A row that is not such a timing (bytes, hit rates, counts, one run against a
    deadline or an ideal) has no rounds and is judged on its one measure; a row that
    bounds our own time keeps its rounds but is judged on our median. ``basis`` says
    which. ``judged``: whether ``passed`` means anything (not at tiny sizes: a smoke
    run's figures are noise). ``part``: "a" and "b" of row 24.
    """

    number: int
    measure: str
    ours: float
    baseline: float
    unit: str
    ratio: float
    target: str
    passed: bool
    basis: str = "one measure"
    rounds: tuple[Round, ...] = ()
    part: str = ""
    judged: bool = True
    spread: tuple[float, float] | None = attrs.field(
        init=False, default=attrs.Factory(_spread, takes_self=True)
    )

    @property
    def label(self) -> str:
        """The row's number as the table (docs/performance.md) shows it: ``7``, ``24a``."""
        return f"{self.number}{self.part}"

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


def _alternated(
    sides: Sequence[Callable[[], float]], rounds: int, *, warm_up: bool = True
) -> list[list[float]]:
    """Each side's figure in each round, after one warm-up of every side (unless each
    run starts from nothing anyway, and a warm-up would only cost its time).

    Within a round the sides run one after another, in reverse order every other
    round: a drift of the machine, or work one side leaves behind for the next (a WAL
    checkpoint, a collection), falls on each side alike.
    """
    for side in sides if warm_up else ():
        side()
    figures: list[list[float]] = [[] for _ in sides]
    for n in range(rounds):
        order = range(len(sides)) if n % 2 == 0 else reversed(range(len(sides)))
        for index in order:
            figures[index].append(sides[index]())
    return figures


def _interleaved(
    ours: Callable[[], float], baseline: Callable[[], float], rounds: int, *, warm_up: bool = True
) -> tuple[list[float], list[float]]:
    """Per-op seconds for each round of each side, rounds alternating."""
    mine, theirs = _alternated((ours, baseline), rounds, warm_up=warm_up)
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


def _p99(values: Sequence[float]) -> float:
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


def _plant(url: str, values: Mapping[str, bytes]) -> None:
    """Write ``values`` (store key -> entry) into the store at ``url``, as a sibling
    process would: through a connection of its own, one entry at a time."""
    store = open_store(url)
    try:
        for key, value in values.items():
            store.put(key, value)
    finally:
        store.close()


def _ids(count: int) -> list[tuple[str, str]]:
    return [(f"c{i % CUSTOMERS}", f"flag-{(i * 7) % (FEATURES - 1)}") for i in range(count)]


# A unit's scale from seconds (or from itself: counts "n", ratios "x").
SCALES = {"us": 1e6, "ms": 1e3, "s": 1.0, "n": 1.0, "x": 1.0}


# What a row is judged on, when it is not the median of its round ratios (the table says).
MEDIAN_RATIO = "median of round ratios"
OUR_MEDIAN = "our median time"  # a bound of our own time; the baseline shows the floor
BYTES = "bytes (one measure)"  # memory is measured once: it does not wobble as time does


def _row(
    number: int,
    measure: str,
    mine: Sequence[float],
    theirs: Sequence[float],
    unit: str,
    target: str,
    rule: Callable[[float], bool],
    *,
    invert: bool = False,
    part: str = "",
    basis: str = MEDIAN_RATIO,
) -> Row:
    """A timed row from each side's figure per round (paired by round), judged by
    ``rule(the median of the per-round ratios)``."""
    scale = SCALES[unit]
    rounds = tuple(
        Round(ours * scale, base * scale, base / ours if invert else ours / base)
        for ours, base in zip(mine, theirs, strict=True)
    )
    ratio = statistics.median(one.ratio for one in rounds)
    return Row(
        number,
        measure,
        statistics.median(mine) * scale,
        statistics.median(theirs) * scale,
        unit,
        ratio,
        target,
        rule(ratio),
        basis,
        rounds,
        part,
    )


def _on_threads(threads: int, share: int, work: Callable[[int], None]) -> float:
    """Seconds per operation when ``threads`` threads, started at once, each run
    ``work(its index)``: ``share`` operations each, or ``share * threads`` between them."""
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
