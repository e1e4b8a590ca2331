"""Redis itself unreachable or slow: checks within budget, usage kept locally and moved back."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from stigg_cache import ConfigurationError, FallbackPolicy, ResilientClient, Source
from stigg_cache.errors import StoreError
from stigg_cache.testing.fake import FakeMode, FakeStigg
from stigg_cache_redis import RedisSettings, open_redis_outbox, open_redis_store

from conftest import API_KEY, OwnRedis, namespace_for, url_for

BUDGET_S = 0.3
MARGIN_S = 0.25
POLICY = FallbackPolicy.from_yaml(
    "version: 1\nstaleness:\n  fresh_for: 60s\n  max_staleness: 1h\n"
    "features:\n  sso:\n    fallback: {has_access: false}\n"
)


@pytest.fixture
def blackholed_port() -> Iterator[int]:
    """A port that completes the TCP handshake and then never answers (a hung Redis)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield int(listener.getsockname()[1])


def _client(fake: FakeStigg, store: str) -> ResilientClient:
    return ResilientClient(
        None, api_key=API_KEY, base_url=fake.url, store=store, policy=POLICY, check_timeout=BUDGET_S
    )


def _timed_check(client: ResilientClient, customer: str) -> tuple[Source, float]:
    started = time.perf_counter()
    result = client.get_boolean_entitlement(customer_id=customer, feature_id="sso")
    return result.decision.source, time.perf_counter() - started


def test_checks_answer_within_budget_when_redis_dies(
    fake: FakeStigg, own_redis: OwnRedis, tmp_path: Path
) -> None:
    fake.set_customer("globex", [])
    with _client(fake, url_for(tmp_path, own_redis.url)) as client:
        assert _timed_check(client, "acme")[0] is Source.LIVE
        own_redis.stop()
        fake.set_mode(FakeMode.DOWN)
        warm, warm_s = _timed_check(client, "acme")
        cold, cold_s = _timed_check(client, "globex")
        assert (warm, cold) == (Source.CACHE, Source.DEFAULT)  # features.sso.fallback
        assert max(warm_s, cold_s) < BUDGET_S + MARGIN_S
        status = client.status()
        assert not status.store_healthy
        assert "redis store" in (status.store_error or "")


def test_a_hung_redis_costs_one_timeout_then_nothing(
    fake: FakeStigg, blackholed_port: int, tmp_path: Path
) -> None:
    fake.set_mode(FakeMode.DOWN)
    store = url_for(tmp_path, f"redis://127.0.0.1:{blackholed_port}/0")
    with _client(fake, store) as client:
        times = [_timed_check(client, f"cold-{n}") for n in range(20)]
    assert {source for source, _ in times} == {Source.DEFAULT}
    assert max(elapsed for _, elapsed in times) < BUDGET_S + MARGIN_S
    # redis-py's own retries are off: one 0.1 s timeout, then the gate answers at once.
    assert sorted(elapsed for _, elapsed in times)[10] < 0.05


def test_usage_waits_locally_while_redis_is_down_and_moves_to_redis_when_it_returns(
    fake: FakeStigg, own_redis: OwnRedis, tmp_path: Path
) -> None:
    fake.set_mode(FakeMode.DOWN)
    store = url_for(tmp_path, own_redis.url)
    pending = f"{{stigg-cache:{namespace_for(tmp_path)}}}:outbox:pending"
    with _client(fake, store) as client:
        client.report_event(
            [{"customer_id": "acme", "event_name": "api.request", "idempotency_key": "before"}]
        )
        own_redis.stop()
        receipts = client.report_event(
            [
                {"customer_id": "acme", "event_name": "api.request", "idempotency_key": f"k{n}"}
                for n in range(50)
            ]
        )
        assert len(receipts) == 50  # durable: in the local outbox
        status = client.status()
        assert status.outbox_depth == 50
        assert "local outbox" in (status.outbox_error or "")
        own_redis.start()  # an empty Redis (no persistence): "before" was lost with it
        server = redis.Redis(port=own_redis.port)
        deadline = time.monotonic() + 40  # the gate re-tries Redis after 1, 2, 4... s
        while server.zcard(pending) < 50 and time.monotonic() < deadline:
            time.sleep(0.05)  # the flusher moves the local records over
        assert server.zcard(pending) == 50
        server.close()
        assert client.status().outbox_error is None
        fake.set_mode(FakeMode.UP)
        deadline = time.monotonic() + 30
        while not client.flush(timeout=2).drained and time.monotonic() < deadline:
            client.get_boolean_entitlement(customer_id="acme", feature_id="sso")  # probes Stigg
            time.sleep(0.2)
        assert client.status().outbox_depth == 0
    keys = sorted(event["idempotencyKey"] for event in fake.account.events)
    assert keys == sorted(f"k{n}" for n in range(50))
    assert max(fake.account.receipts.values()) == 1


def test_flush_does_not_call_an_outbox_it_cannot_read_drained(
    fake: FakeStigg, own_redis: OwnRedis, tmp_path: Path
) -> None:
    fake.set_mode(FakeMode.DOWN)
    with _client(fake, url_for(tmp_path, own_redis.url)) as client:
        client.report_event(
            [
                {"customer_id": "acme", "event_name": "api.request", "idempotency_key": f"k{n}"}
                for n in range(5)
            ]
        )
        own_redis.stop()  # the five wait in Redis; the local outbox is empty
        flushed = client.flush(timeout=1)
        assert not flushed.drained, flushed  # was drained=True: only the local part was read
        assert client.status().outbox_error is not None


def test_the_fleet_shares_one_token_bucket(tmp_path: Path) -> None:
    boxes = [open_redis_outbox(url_for(tmp_path)) for _ in range(2)]
    buckets = [box.rate_bucket("events", rate=100.0, capacity=100.0) for box in boxes]
    granted: list[int] = []
    lock = threading.Lock()

    def take(bucket_index: int) -> None:
        for _ in range(20):
            got = buckets[bucket_index].acquire(10, 1, now=0.0)
            with lock:
                granted.append(got)

    started = time.monotonic()
    threads = [threading.Thread(target=take, args=(n % 2,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    # 120 asks of 10 from one shared bucket of 100 (+100/s): never more than it held.
    assert sum(granted) <= 100 + 100 * elapsed + 1
    assert sum(granted) >= 100
    buckets[0].pause(2.0, now=0.0)
    assert buckets[1].available(now=0.0) < 0  # a 429's pause holds for the whole fleet
    for box in boxes:
        box.close()


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("ttl=soon", "ttl must be a positive number of seconds"),
        ("timeout=0", "timeout must be a positive number"),
        ("namespace=a:b", "namespace 'a:b': use letters"),
    ],
)
def test_url_mistakes_say_what_to_change(query: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        RedisSettings.from_url(f"redis://127.0.0.1:6379/0?{query}")


def test_the_password_never_shows(tmp_path: Path) -> None:
    url = f"redis://:hunter2@127.0.0.1:1/0?local_outbox={tmp_path}/o.db"
    store = open_redis_store(url)
    with pytest.raises(StoreError) as raised:
        store.get("k")
    for text in (repr(store), str(raised.value)):
        assert "hunter2" not in text
    store.close()


def test_snapshots_expire_with_a_ttl(tmp_path: Path) -> None:
    store = open_redis_store(url_for(tmp_path) + "&ttl=1")
    store.put("k", b"v")
    assert store.get("k") == b"v"
    time.sleep(1.2)
    assert list(store.keys()) == []
    store.close()
