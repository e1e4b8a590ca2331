"""Row 9: the memory a million entitlements take in L1."""

from __future__ import annotations

import gc
import json
import time
import tracemalloc
from collections.abc import Callable, Iterator

from stigg_cache import SYSTEM_CLOCK
from stigg_cache.adapters import parse_entitlements
from stigg_cache.benchmarks._common import BYTES, FEATURES, Row, Sizes, _features
from stigg_cache.benchmarks.first_check import _response_json
from stigg_cache.models import Snapshot
from stigg_cache.stores.base import MISSING, Missing
from stigg_cache.stores.layered import SnapshotCache


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
        BYTES,
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
