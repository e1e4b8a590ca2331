"""Row 14: Stigg reads of 8 forked workers against one process."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from stigg_cache.benchmarks._common import API_KEY, Row, Sizes
from stigg_cache.benchmarks._forked import _in_workers
from stigg_cache.client import ResilientClient
from stigg_cache.testing.fake import FakeStigg, boolean


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
    ratio = reads[0] / reads[1]
    return Row(
        14, "Stigg reads, 8 forked workers (vs 1 process)", reads[0], reads[1], "n", ratio,
        "<= 1.2x", ratio <= 1.2, "reads (a count)",
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
