"""Row 12: the asyncio client's warm check against the blocking client's."""

from __future__ import annotations

import asyncio
import gc
import time
from pathlib import Path

from stigg_cache.aio import AsyncResilientClient
from stigg_cache.benchmarks._common import (
    API_KEY,
    CUSTOMERS,
    Row,
    Sizes,
    _features,
    _ids,
    _interleaved,
    _row,
    _timed,
)
from stigg_cache.client import ResilientClient
from stigg_cache.testing.fake import FakeStigg


def bench_async_check(sizes: Sizes, tmp: Path) -> Row:
    """Row 12: an awaited warm check of AsyncResilientClient against the same check, blocking.

    Each client is warmed with the same customers from the same fake Stigg, so both L1s
    hold the same snapshots: the difference is the coroutine around the same check.
    """
    ids = _ids(sizes.ops)
    loop = asyncio.new_event_loop()
    with (
        FakeStigg(api_key=API_KEY) as fake,
        ResilientClient(
            None, api_key=API_KEY, base_url=fake.url, store=f"sqlite:///{tmp}/blocking.db"
        ) as twin,
    ):
        for customer in range(CUSTOMERS):
            fake.set_customer(f"c{customer}", _features(customer))
            twin.get_entitlements(customer_id=f"c{customer}")

        async def build() -> AsyncResilientClient:
            client = AsyncResilientClient(
                None, api_key=API_KEY, base_url=fake.url, store=f"sqlite:///{tmp}/async.db"
            )
            for customer in range(CUSTOMERS):
                await client.get_entitlements(customer_id=f"c{customer}")
            return client

        client = loop.run_until_complete(build())
        awaited, blocking = client.get_boolean_entitlement, twin.get_boolean_entitlement

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
