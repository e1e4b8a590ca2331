"""Benchmark rows of L1 and the store: hit rates against plain LRU, the memory L1 really
holds, and a store swept of what no check can use.

Rows 17-19 replay one request sequence through our L1 (CLOCK eviction with
TinyLFU admission) and through a plain LRU of the same capacity: a Zipf
workload, a scan beside a hot set, and a round robin over a few more
customers than fit (where LRU falls off its cliff). Row 20 fills a client's
L1 past its byte budget with every feature's answer prepared and measures
what L1 holds (tracemalloc) against ``l1_max_bytes``. Rows 21-22 sweep a SQLite
store of snapshots past their time, and churn new customers through it under
``store_max_bytes``.
"""

from __future__ import annotations

import gc
import itertools
import random
import sqlite3
import time
import tracemalloc
from collections import OrderedDict
from collections.abc import Callable, Iterator
from pathlib import Path

from stigg_cache import SYSTEM_CLOCK
from stigg_cache.benchmarks._common import BYTES, Row, Sizes
from stigg_cache.benchmarks.deep_outbox import bench_deep_outbox
from stigg_cache.client import ResilientClient
from stigg_cache.models import Snapshot
from stigg_cache.stores import encode_snapshot, snapshot_key
from stigg_cache.stores.layered import SnapshotCache
from stigg_cache.stores.memory import MemoryStore
from stigg_cache.stores.sqlite import TABLE, SqliteStore
from stigg_cache.testing.fake import FakeStigg, boolean, metered
from stigg_cache.testing.inside import forget_memory, held_in_memory


def bench_l1(sizes: Sizes, tmp: Path) -> list[Row]:
    """Rows 17-22: L1's hit rates beside plain LRU's; the memory it holds against its budget;
    a store swept of old snapshots, and bounded under churn."""
    rows = [
        Row(number, measure, ours, lru, "%", ours / lru if lru else ours, target, met, "hit rates")
        for number, measure, ours, lru, target, met in bench_hit_rates(sizes.l1_requests)
    ]
    held = l1_memory(tmp, sizes.l1_customers, sizes.l1_budget)
    ratio = held / sizes.l1_budget
    rows.append(
        Row(20, "memory L1 holds, every feature checked (vs l1_max_bytes)", held / 1e6,
            sizes.l1_budget / 1e6, "MB", ratio, "<= 1.3x", ratio <= 1.3, BYTES)
    )  # fmt: skip
    left, size = store_churn(tmp, sizes.churn_customers, sizes.churn_bound)
    rows.append(
        Row(21, "snapshots past max_staleness swept (of 1,000)", 1_000 - left, 1_000, "n",
            (1_000 - left) / 1_000, "all (none left)", left == 0, "a count")
    )  # fmt: skip
    rows.append(
        Row(22, f"SQLite file, {sizes.churn_customers:,} customers' churn (vs store_max_bytes)",
            size * sizes.churn_bound / 1e6, sizes.churn_bound / 1e6, "MB", size, "<= 1.1x",
            size <= 1.1, BYTES)
    )  # fmt: skip
    return rows + bench_deep_outbox(sizes, tmp)


CAPACITY = 1_000  # entries either cache holds


ZIPF_CUSTOMERS = 20_000


ZIPF_EXPONENT = 0.9


HOT_CUSTOMERS = 500


FEATURES = 20


def _requests(kind: str, count: int, seed: int = 7) -> Iterator[str]:
    """The customer ids a workload asks for, in order."""
    rng = random.Random(seed)  # noqa: S311 - a workload, not a secret
    if kind == "zipf":
        weights = list(itertools.accumulate(1 / k**ZIPF_EXPONENT for k in range(1, ZIPF_CUSTOMERS)))
        for rank in rng.choices(range(ZIPF_CUSTOMERS - 1), cum_weights=weights, k=count):
            yield f"z{rank}"
    elif kind == "scan":  # half the requests to a hot set, half a scan of customers never seen
        for n in range(count):
            yield f"h{rng.randrange(HOT_CUSTOMERS)}" if n % 2 else f"s{n}"
    else:  # round robin over 10 % more customers than fit
        for n in range(count):
            yield f"r{n % (CAPACITY * 11 // 10)}"


def _hit_rates(kind: str, count: int) -> tuple[float, float]:
    """Hit rates of our L1 and of plain LRU over the same requests."""
    store = MemoryStore()
    cache = SnapshotCache(store, SYSTEM_CLOCK, lambda *_: None, max_entries=CAPACITY)
    lru: OrderedDict[str, None] = OrderedDict()
    ours = theirs = 0
    for customer in _requests(kind, count):
        if cache.peek((customer, None)) is not None:
            ours += 1
        else:  # fetched: in the store afterwards, and offered to L1
            snapshot = Snapshot(customer, None, {"sso": boolean("sso")}, 1.0)
            store.put(snapshot_key(customer, None), encode_snapshot(snapshot))
            cache.get(customer, None)
        if customer in lru:
            theirs += 1
            lru.move_to_end(customer)
        else:
            lru[customer] = None
            if len(lru) > CAPACITY:
                lru.popitem(last=False)
    return ours / count, theirs / count


# number, workload, measure, target, and whether (our rate, LRU's rate) meets it
_HIT_ROWS: tuple[tuple[int, str, str, str, Callable[[float, float], bool]], ...] = (
    (17, "zipf", f"L1 hit rate, Zipf {ZIPF_EXPONENT} over {ZIPF_CUSTOMERS:,}",
     ">= 0.95x LRU", lambda ours, lru: ours >= 0.95 * lru),
    (18, "scan", f"L1 hit rate, a scan beside {HOT_CUSTOMERS} hot customers",
     ">= 1.2x LRU", lambda ours, lru: ours >= 1.2 * lru),
    (19, "round", "L1 hit rate, round robin over 1.1x capacity",
     ">= 50 % (LRU: none)", lambda ours, _lru: ours >= 0.5),
)  # fmt: skip


def bench_hit_rates(requests: int) -> list[tuple[int, str, float, float, str, bool]]:
    """Rows 17-19: (number, measure, our hit rate %, LRU's %, target, met)."""
    rows = []
    for number, kind, measure, target, met in _HIT_ROWS:
        ours, lru = _hit_rates(kind, requests)
        rows.append((number, measure, ours * 100, lru * 100, target, met(ours, lru)))
    return rows


def l1_memory(tmp: Path, customers: int, budget: int) -> float:
    """Row 20: bytes L1 holds after every feature of every customer was checked twice,
    with ``l1_max_bytes=budget``."""
    features = [
        *(boolean(f"flag-{n}") for n in range(FEATURES - 1)),
        metered("api_calls", limit=100),
    ]
    with FakeStigg(api_key="bench-key") as fake:
        for n in range(customers):
            fake.set_customer(f"c{n}", features)
        client = ResilientClient(
            None,
            api_key="bench-key",
            base_url=fake.url,
            store=f"sqlite:///{tmp}/l1-memory.db",
            l1_max_bytes=budget,
        )
        check: Callable[..., object] = client.get_boolean_entitlement
        tracemalloc.start()  # before L1 holds anything: what it frees is then traced
        for _ in range(2):
            for n in range(customers):
                for feature in features:
                    check(customer_id=f"c{n}", feature_id=feature.feature_id)
        gc.collect()
        held = held_in_memory(client)
        forget_memory(client)
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        del held
        gc.collect()
        freed = before - tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        client.close()
    return float(freed)


def store_churn(tmp: Path, customers: int, bound: int) -> tuple[int, float]:
    """Rows 21-22: snapshots left of 1,000 past the policy's longest ``max_staleness`` after a
    sweep; the SQLite file's size after writing ``customers`` new customers' snapshots with
    ``store_max_bytes=bound`` (a sweep per 1 % of the bound written, as a busy service's
    minute would be)."""
    hour = 3600.0
    path = tmp / "churn.db"
    cache = SnapshotCache(
        SqliteStore(path), SYSTEM_CLOCK, lambda *_: None, keep_for=lambda: hour,
        store_max_bytes=bound,
    )  # fmt: skip
    features = {f"flag-{n}": boolean(f"flag-{n}") for n in range(FEATURES)}
    now = time.time()
    for n in range(1_000):
        cache.put(Snapshot(f"old-{n}", None, features, now), 0.0)
    with sqlite3.connect(path) as db:
        db.execute(f"UPDATE {TABLE} SET updated_at = updated_at - ?", (2 * hour,))  # noqa: S608
    cache.sweep()
    left = sum(1 for _ in cache.store.keys("snapshot:"))
    written = 0
    for n in range(customers):
        cache.put(Snapshot(f"c{n}", None, features, now), 0.0)
        written += 4_400
        if written >= bound // 100:
            cache.sweep()
            written = 0
    cache.sweep()
    cache.store.close()
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return left, path.stat().st_size / bound
