"""Hosts of a fleet and their local outboxes: whose usage waits where, who sends it, how fast.

Each host is one or more client processes with the local outbox of the host
(where usage waits while Redis is unreachable), sharing one Redis namespace.
"""

from __future__ import annotations

import asyncio
import collections
import time
from pathlib import Path
from typing import cast

import redis

from stigg_cache import AsyncResilientClient, ResilientClient
from stigg_cache.testing.fake import FakeMode, FakeStigg
from stigg_cache.testing.proxy import FaultProxy

from conftest import API_KEY, OwnRedis, namespace_for, url_for
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


def _host_url(server_url: str, tmp_path: Path, host: int) -> str:
    """The fleet's namespace in Redis; the local outbox of host number ``host``."""
    return f"{server_url}?namespace={namespace_for(tmp_path)}&local_outbox={tmp_path}/h{host}.db"


def _hosts_seen(server: OwnRedis, tmp_path: Path, count: int) -> bool:
    """Whether Redis saw ``count`` processes take from the fleet's buckets, and each of
    them took again since (so each was told there are ``count``)."""
    key = f"{{stigg-cache:{namespace_for(tmp_path)}}}:processes"
    client = redis.Redis(port=server.port)
    try:
        if not _wait_for(lambda: client.zcard(key) >= count, 60):  # a loaded host is slow
            return False

        def scores() -> list[float]:
            found = cast("list[tuple[bytes, float]]", client.zrange(key, 0, -1, withscores=True))
            return [score for _, score in found]

        joined = max(scores())
        return _wait_for(lambda: min(scores()) > joined, 60)
    finally:
        client.close()


def test_hosts_cut_off_from_redis_send_at_their_share_of_the_accounts_rate(
    fake: FakeStigg, own_redis: OwnRedis, tmp_path: Path
) -> None:
    rate, per_host = 200.0, 1_000
    fake.account.set_limits(rate, 600.0)  # Stigg's limit for the account
    fake.set_mode(FakeMode.DOWN)
    hosts = [
        Worker(_host_url(own_redis.url, tmp_path, n), fake.url, API_KEY, events_per_second=rate)
        for n in range(3)
    ]
    try:
        assert _hosts_seen(own_redis, tmp_path, 3)  # each host was told there are 3
        own_redis.stop()  # from now on, each host paces alone
        for n, host in enumerate(hosts):
            host.ask("events", customer="acme", keys=[f"h{n}-{k}" for k in range(per_host)])
        fake.set_mode(FakeMode.UP)
        assert _wait_for(lambda: len(_counted(fake)) >= 3 * per_host, 120)
        pacing = [host.ask("status")["pacing"] or "" for host in hosts]
    finally:
        for host in hosts:
            host.close()
    assert (
        fake.account.rate_limited == 0
    )  # was 7 and 8 (two runs): three hosts at the account's rate
    assert all("1/3 of the account's rate" in note for note in pacing), pacing
    assert max(_counted(fake).values()) == 1


def test_hosts_cut_off_from_redis_never_grant_past_a_limit_together(
    fake: FakeStigg, own_redis: OwnRedis, tmp_path: Path
) -> None:
    # acme's api_calls: limit 100, usage 40 at Stigg: 60 left for the whole fleet.
    hosts = [Worker(_host_url(own_redis.url, tmp_path, n), fake.url, API_KEY) for n in range(3)]
    try:
        for host in hosts:
            answer = host.ask("metered", customer="acme", feature="api_calls")
            assert answer["source"] in ("LIVE", "CACHE"), answer  # the snapshot, in memory too
        assert _hosts_seen(own_redis, tmp_path, 3)  # each host was told there are 3
        fake.set_mode(FakeMode.DOWN)  # answers from the snapshot each host holds
        own_redis.stop()  # no host sees another's usage now
        granted = [
            sum(
                host.ask("consume", customer="acme", feature="api_calls", key=f"h{n}-{k}")[
                    "granted"
                ]
                for k in range(70)
            )
            for n, host in enumerate(hosts)
        ]
        pacing = [host.ask("status")["pacing"] or "" for host in hosts]
    finally:
        for host in hosts:
            host.close()
    assert sum(granted) <= 60, granted  # was [60, 60, 60]: 180 of the 60 left
    assert granted == [20, 20, 20]  # each its share: one third of what was left
    assert all("1/3" in note for note in pacing), pacing


def test_a_threaded_and_an_async_client_cut_off_from_redis_each_consume_their_share(
    fake: FakeStigg, own_redis: OwnRedis, tmp_path: Path
) -> None:
    # Two clients, two processes as Redis counts them (each outbox names itself).
    sync = ResilientClient(
        None, api_key=API_KEY, base_url=fake.url, store=_host_url(own_redis.url, tmp_path, 0)
    )
    url = _host_url(own_redis.url, tmp_path, 1)

    async def story() -> tuple[int, int, str | None]:
        async with AsyncResilientClient(None, api_key=API_KEY, base_url=fake.url, store=url) as aio:
            await aio.get_metered_entitlement(customer_id="acme", feature_id="api_calls")
            sync.get_metered_entitlement(customer_id="acme", feature_id="api_calls")
            assert _hosts_seen(own_redis, tmp_path, 2)
            fake.set_mode(FakeMode.DOWN)
            own_redis.stop()
            threaded = sum(sync.consume("acme", "api_calls").granted for _ in range(70))
            awaited = sum([(await aio.consume("acme", "api_calls")).granted for _ in range(70)])
            return threaded, awaited, getattr(aio.status(), "pacing", None)

    try:
        threaded, awaited, pacing = asyncio.run(story())
        sync_pacing = getattr(sync.status(), "pacing", None)
    finally:
        sync.close()
    assert (threaded, awaited) == (30, 30)  # 60 left: half each (was 60 and 60)
    assert "1/2" in (pacing or ""), pacing
    assert "1/2" in (sync_pacing or ""), sync_pacing
