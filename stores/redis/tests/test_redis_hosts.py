"""Hosts of a fleet and their local outboxes: whose usage waits where, who sends it, how fast.

Each host is one or more client processes with the local outbox of the host
(where usage waits while Redis is unreachable), sharing one Redis namespace.
"""

from __future__ import annotations

import collections
import time
from pathlib import Path

from stigg_cache.testing.fake import FakeMode, FakeStigg
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


STAGING_KEY = "sk-test-staging-0123456789abcdef"


def _drained(worker: Worker, seconds: float = 30) -> bool:
    """Flushed, a check probing Stigg between tries (flush does not while Stigg is offline)."""

    def flushed() -> bool:
        if worker.ask("flush", timeout=2)["drained"]:
            return True
        worker.ask("check", customer="acme", feature="sso")
        return False

    return _wait_for(flushed, seconds)


def test_clients_of_other_redis_servers_and_environments_never_share_a_local_outbox(
    fake: FakeStigg, tmp_path: Path
) -> None:
    production_redis, staging_redis = OwnRedis(), OwnRedis()
    production_redis.start()
    staging_redis.start()
    cache = tmp_path / "cache"  # the user's cache directory: the default local outboxes
    with FakeStigg(api_key=STAGING_KEY) as staging:
        try:
            # Staging, its Redis and its Stigg unreachable: five events wait locally.
            staging.set_mode(FakeMode.DOWN)
            s = Worker(staging_redis.url, staging.url, STAGING_KEY, cache_home=cache, lease_s=4)
            staging_redis.stop()
            assert s.ask("events", customer="acme", keys=[f"s{n}" for n in range(5)]) == {
                "durable": 5
            }
            s.close()
            # Production, on its own Redis with the default namespace too, sends its own.
            p = Worker(production_redis.url, fake.url, API_KEY, cache_home=cache)
            try:
                p.ask("events", customer="acme", keys=["p0"])
                assert _drained(p)
                assert p.ask("flush", timeout=2)["drained"]  # a second pass looked again
            finally:
                p.close()
            assert set(_counted(fake)) == {"p0"}  # was p0 and s0..s4: staging's, with our key
            # Staging's usage is staging's to send, once it is back.
            staging_redis.start()
            staging.set_mode(FakeMode.UP)
            s = Worker(staging_redis.url, staging.url, STAGING_KEY, cache_home=cache)
            try:
                assert _drained(s), (s.ask("status"), len(staging.account.events))
            finally:
                s.close()
            assert _counted(staging) == {f"s{n}": 1 for n in range(5)}
        finally:
            production_redis.stop()
            staging_redis.stop()


def test_a_namespace_never_takes_in_nor_hands_out_another_environments_usage(
    fake: FakeStigg, own_redis: OwnRedis, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    with FakeStigg(api_key=STAGING_KEY) as staging:
        staging.set_mode(FakeMode.DOWN)
        p = Worker(own_redis.url, fake.url, API_KEY, cache_home=cache)
        s = Worker(own_redis.url, staging.url, STAGING_KEY, cache_home=cache)
        try:
            p.ask("events", customer="acme", keys=["p0"])  # the namespace is production's
            assert _drained(p)
            s.ask("events", customer="acme", keys=[f"s{n}" for n in range(5)])
            assert _drained(p)
            assert p.ask("status")["outbox_depth"] == 0
            problem = s.ask("status")["outbox_error"] or ""
            staging.set_mode(FakeMode.UP)
            assert _drained(s)
        finally:
            s.close()
            p.close()
    assert _counted(fake) == {"p0": 1}  # was p0 and s0..s4, sent with production's key
    assert _counted(staging) == {f"s{n}": 1 for n in range(5)}
    assert "another Stigg environment" in problem, problem
