"""Snapshots on Redis are counted from their sorted set: never by walking the keyspace."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import redis

from stigg_cache.stores import open_store
from stigg_cache.stores.base import count_keys
from stigg_cache.stores.signed import SignedStore
from stigg_cache.testing import runtime_of
from stigg_cache_redis.store import RedisStore
from tests.helpers import eventually

from conftest import REDIS_URL, url_for


def _scans(store: RedisStore) -> list[object]:
    """Every walk of the keyspace the store starts from now on (a spy: it still walks)."""
    walks: list[object] = []
    walk = store._redis.scan_iter

    def spied(*args: Any, **kwargs: Any) -> Any:
        walks.append(kwargs.get("match"))
        return walk(*args, **kwargs)

    store._redis.scan_iter = spied  # type: ignore[method-assign]
    return walks


def test_snapshots_are_counted_without_a_scan_and_expired_ones_drop_out(tmp_path: Path) -> None:
    store = open_store(url_for(tmp_path))
    server = redis.Redis.from_url(REDIS_URL)
    try:
        assert isinstance(store, RedisStore)
        store.put("snapshot:a", b"1")
        store.put("snapshot:b", b"2")
        store.keep_for("snapshot:", 1, None)  # written from now on: gone after a second
        store.put("snapshot:short-lived", b"3")
        store.put("other:x", b"4")
        walks = _scans(store)

        assert count_keys(store, "snapshot:") == 3
        assert count_keys(store, "other:") == 1
        assert walks == []  # a sorted set's size, not a walk of every key

        deadline = time.monotonic() + 10
        while server.exists(f"stigg-cache:{store.namespace}:snap:snapshot:short-lived"):
            assert time.monotonic() < deadline, "Redis did not expire the key"
            time.sleep(0.1)
        time.sleep(0.05)  # past the expiry the sorted set holds, by this host's clock too
        assert count_keys(store, "snapshot:") == 2
        store.delete("snapshot:a")
        assert count_keys(store, "snapshot:") == 1
        assert count_keys(store, "snap") == 1  # not a family of keys: walked
        assert len(walks) == 1
    finally:
        store.close()
        server.close()


def test_status_of_a_client_on_redis_counts_its_snapshots_without_a_scan(tmp_path: Path) -> None:
    from stigg_cache.client import ResilientClient
    from stigg_cache.testing.fake import FakeStigg, boolean

    with FakeStigg(api_key="sk-test") as fake:
        for n in range(3):
            fake.set_customer(f"c{n}", [boolean("sso", granted=True)])
        with ResilientClient(
            None, api_key="sk-test", base_url=fake.url, store=url_for(tmp_path),
            signing_key="count-test-signing-key",
        ) as client:  # fmt: skip
            for n in range(3):
                client.get_boolean_entitlement(customer_id=f"c{n}", feature_id="sso")
            signed = runtime_of(client).parts.cache.store
            assert isinstance(signed, SignedStore)
            store = signed.inner
            assert isinstance(store, RedisStore)
            walks = _scans(store)
            deadline = time.monotonic() + 10
            while client.status().snapshots_held != 3:  # counted on a thread of its own
                assert time.monotonic() < deadline, client.status().snapshots_held
                runtime_of(client).parts.cache.upkeep.counting.due_now()
                time.sleep(0.05)
            assert walks == []


def test_a_sweep_drops_expired_snapshots_from_the_sorted_set_uncounted(tmp_path: Path) -> None:
    # With no status() to count them, customers written once would stay listed forever.
    store = open_store(url_for(tmp_path))
    server = redis.Redis.from_url(REDIS_URL)
    try:
        assert isinstance(store, RedisStore)
        store.keep_for("snapshot:", 1, None)
        for n in range(3):
            store.put(f"snapshot:gone-{n}", b"x")
        listed = f"stigg-cache:{store.namespace}:index:snapshot:"
        assert server.zcard(listed) == 3
        deadline = time.monotonic() + 10
        while server.zcount(listed, "-inf", time.time()) < 3:  # past every expiry
            assert time.monotonic() < deadline, "the entries did not expire"
            time.sleep(0.1)

        assert store.prune(1_000) == 0  # Redis dropped the snapshots themselves

        assert server.zcard(listed) == 0
    finally:
        store.close()
        server.close()


def test_a_forked_worker_and_its_parent_count_the_snapshots_both_wrote(tmp_path: Path) -> None:
    from stigg_cache.client import ResilientClient
    from stigg_cache.testing.fake import FakeStigg, boolean
    from tests.forking import in_child

    with FakeStigg(api_key="sk-test") as fake:
        for customer in ("parent", "child-1", "child-2"):
            fake.set_customer(customer, [boolean("sso", granted=True)])
        with ResilientClient(
            None, api_key="sk-test", base_url=fake.url, store=url_for(tmp_path),
            signing_key="count-test-signing-key",
        ) as client:  # fmt: skip  # built before the fork, as gunicorn --preload does

            def counted() -> int | None:
                runtime_of(client).parts.cache.upkeep.counting.due_now()
                client.status()  # starts a count on a thread of its own
                eventually(lambda: not runtime_of(client).parts.cache.upkeep.counting.running())
                return client.status().snapshots_held

            client.get_boolean_entitlement(customer_id="parent", feature_id="sso")

            def child() -> int | None:
                for customer in ("child-1", "child-2"):
                    client.get_boolean_entitlement(customer_id=customer, feature_id="sso")
                return counted()

            assert in_child(child) == 3  # the parent's snapshot and its own two
            assert counted() == 3  # the child's two, written through the shared Redis
