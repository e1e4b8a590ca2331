"""A store another process keeps busy never spends a check's budget (DESIGN §8).

Another process holds the SQLite store's write lock for 5 s. Checks keep
answering from Stigg and memory within their budget; the store's trouble
shows as ``store_healthy`` and is never counted against Stigg.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from stigg_cache import ConnectionState, FallbackPolicy, ResilientClient, Source, Staleness
from stigg_cache.testing import runtime_of
from stigg_cache.testing.fake import FakeStigg, boolean
from tests.conftest import API_KEY
from tests.forking import child_result, fork_child
from tests.helpers import eventually

CHECK_TIMEOUT_S = 0.5
HOLD_S = 5.0
CHECKING_S = 3.5  # checks run this long, past the store's 2 s busy timeout, within the hold
# Far above any check answered from memory or a loopback fetch (milliseconds), far below
# what a check waiting on the store took before (1.5-7.5 s): no timing flake either way.
SLACK_S = 0.45


def _hold_write_lock(path: Path, ready: Path) -> None:
    """In a child: hold the store's write lock for ``HOLD_S`` (as a long migration would)."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("UPDATE stigg_cache_entries SET updated_at = updated_at")
    ready.touch()
    time.sleep(HOLD_S)
    conn.execute("COMMIT")


def test_a_store_locked_by_another_process_costs_checks_nothing(
    fake: FakeStigg, tmp_path: Path
) -> None:
    customers = [f"busy-{n}" for n in range(24)]
    for customer in ["warm", *customers]:
        fake.set_customer(customer, [boolean(f"only-{customer}")])
    store = tmp_path / "cache.db"
    client = ResilientClient(
        None,
        api_key=API_KEY,
        base_url=fake.url,
        store=f"sqlite:///{store}",
        policy=FallbackPolicy(staleness=Staleness(fresh_for_s=60, max_staleness_s=3600)),
        check_timeout=CHECK_TIMEOUT_S,
    )
    client.get_boolean_entitlement(customer_id="warm", feature_id="only-warm")
    ready = tmp_path / "locked"
    pid = fork_child(lambda: _hold_write_lock(store, ready))
    eventually(ready.exists)
    locked_at = time.monotonic()
    answers, slowest, unhealthy = [], 0.0, False
    for customer in ["warm", *customers]:
        if time.monotonic() - locked_at > CHECKING_S:
            break
        runtime_of(
            client
        ).parts.cache.clear_l1()  # "warm" must come from L2, read while the lock is held
        started = time.monotonic()
        answer = client.get_boolean_entitlement(customer_id=customer, feature_id=f"only-{customer}")
        slowest = max(slowest, time.monotonic() - started)
        answers.append((customer, answer.has_access, answer.decision.source))
        unhealthy |= not client.status().store_healthy
        time.sleep(0.1)  # spread over the lock's hold, so writes keep meeting it
    held_until_now = time.monotonic() - locked_at < HOLD_S
    status = client.status()
    child_result(pid)
    client.close()
    assert held_until_now  # every check above ran while the lock was held
    assert len(answers) >= 6  # spread over more than the store's 2 s busy timeout
    assert answers == [
        ("warm", True, Source.CACHE),
        *((customer, True, Source.LIVE) for customer in customers[: len(answers) - 1]),
    ]
    assert slowest < CHECK_TIMEOUT_S + SLACK_S
    assert unhealthy
    assert (status.state, status.breaker) == (ConnectionState.CONNECTED, "closed")
