"""Hosts of a fleet and their local outboxes: whose usage waits where, who sends it, how fast.

Each host is one or more client processes with the local outbox of the host
(where usage waits while Redis is unreachable), sharing one Redis namespace.
"""

from __future__ import annotations

import collections
import time
from pathlib import Path

from stigg_cache.testing.fake import FakeStigg
from stigg_cache.testing.proxy import FaultProxy

from conftest import API_KEY, OwnRedis, url_for
from fleet import Worker


def _counted(fake: FakeStigg) -> collections.Counter[str]:
    return collections.Counter(event["idempotencyKey"] for event in fake.account.events)


def _wait_for(condition: object, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return True
        time.sleep(0.1)
    return callable(condition) and bool(condition())


def test_usage_a_worker_left_in_the_hosts_local_outbox_is_sent_by_a_sibling_that_never_faulted(
    fake: FakeStigg, own_redis: OwnRedis, tmp_path: Path
) -> None:
    proxy = FaultProxy(own_redis.port)  # only A reaches Redis through it: only A faults
    try:
        a = Worker(url_for(tmp_path, proxy.url.replace("http", "redis") + "/0"), fake.url, API_KEY)
        b = Worker(url_for(tmp_path, own_redis.url), fake.url, API_KEY)
        try:
            proxy.set(refuse=True)
            assert a.ask("events", customer="acme", keys=[f"k{n}" for n in range(5)]) == {
                "durable": 5
            }
            a.kill()  # before Stigg took them: they wait in the host's local outbox
            proxy.clear()
            # B is healthy, and so are Redis and Stigg: B sends them.
            assert _wait_for(lambda: len(_counted(fake)) == 5, 20), (
                f"{len(_counted(fake))} of 5 sent in 20 s; B: {b.ask('status')}"
            )
            assert _wait_for(lambda: b.ask("status")["outbox_depth"] == 0, 20)
        finally:
            b.close()
    finally:
        proxy.close()
    assert _counted(fake) == {f"k{n}": 1 for n in range(5)}
