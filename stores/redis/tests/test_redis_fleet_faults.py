"""A fleet survives Redis misbehaving: restarts, failovers and hosts whose clocks disagree.

Each test runs two or more hosts (processes, each with its client and its own local
outbox) sharing one namespace of a Redis server the test starts, restarts and stops.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from stigg_cache.testing.fake import FakeMode, FakeStigg

from conftest import API_KEY, OwnRedis, namespace_for
from host import Host, host_url

LIMIT = 10
METERED_FALLBACK = (
    f"version: 1\nfeatures:\n  seats: {{fallback: {{has_access: true, usage_limit: {LIMIT}}}}}\n"
)

HostFactory = Callable[..., Host]


@pytest.fixture
def start_host(own_redis: OwnRedis, fake: FakeStigg, tmp_path: Path) -> Iterator[HostFactory]:
    """Starts hosts on the test's Redis, one namespace, each with its own local outbox."""
    started: list[Host] = []

    def start(name: str, **options: Any) -> Host:
        url = host_url(own_redis.url, namespace_for(tmp_path), tmp_path / f"{name}-outbox.db")
        started.append(Host(url, fake.url, API_KEY, **options))
        return started[-1]

    yield start
    for host in started:
        host.resume()
        host.close()


def _wait(condition: Callable[[], bool], what: str, deadline_s: float = 60.0) -> None:
    deadline = time.monotonic() + deadline_s
    while not condition():
        assert time.monotonic() < deadline, f"not within {deadline_s} s: {what}"
        time.sleep(0.05)


def _restart_empty(server: OwnRedis, *hosts: Host) -> None:
    """Redis restarts without persistence: everything in it is gone."""
    server.stop()
    server.start()
    for host in hosts:
        host.wait_for_redis()


def test_hosts_see_each_others_usage_after_redis_restarts_empty(
    own_redis: OwnRedis, fake: FakeStigg, start_host: HostFactory
) -> None:
    """Issue 30 #1: B's feed cursor stayed at the old position, so B ignored A's records."""
    fake.set_mode(FakeMode.DOWN)  # no snapshot: the policy's usage_limit decides, on local usage
    a = start_host("a", policy=METERED_FALLBACK)
    b = start_host("b", policy=METERED_FALLBACK)
    assert b.ask("metered", customer="acme", feature="seats")["usage"] == 0  # B reads acme
    a.ask("events", customer="other", keys=[f"warm-{n}" for n in range(40)])  # the feed moves on
    _wait(lambda: b.ask("cursor")["cursor"] >= 40, "B followed the feed")
    _restart_empty(own_redis, a, b)
    granted_a = a.ask("consume", customer="acme", feature="seats", times=LIMIT)["granted"]
    granted_b = b.ask("consume", customer="acme", feature="seats", times=LIMIT)["granted"]
    print(f"A granted {granted_a}, B granted {granted_b} (limit {LIMIT})")
    assert (granted_a, granted_b) == (LIMIT, 0)
