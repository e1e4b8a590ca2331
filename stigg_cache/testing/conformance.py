"""The store conformance suite: every store, ours or a plugin's, passes it.

Use it by subclassing in a test module::

    class TestMyStore(StoreConformance):
        def make_store(self, base: Path) -> Store:
            return MyStore(base / "db")

    class TestMyDurableStore(DurableStoreConformance):   # shared by processes
        def store_url(self, base: Path) -> str:
            return f"mystore:///{base}/db"
"""

from __future__ import annotations

import contextlib
import multiprocessing
import queue
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stigg_cache._support.clock import SYSTEM_CLOCK
from stigg_cache.errors import StiggCacheError, StoreNotFoundError
from stigg_cache.models import FeatureEntitlement, Snapshot
from stigg_cache.stores import open_store
from stigg_cache.stores._codec import SNAPSHOT_PREFIX, encode_snapshot, snapshot_key
from stigg_cache.stores.base import (
    MISSING,
    Leases,
    Pruning,
    Store,
    count_keys,
    fence_of,
    generation_of,
    put_fenced,
)
from stigg_cache.stores.layered import SnapshotCache

LARGE_VALUE_BYTES = 3 * 1024 * 1024
WRITERS = 4
WRITES_PER_WRITER = 50
LEASED_CUSTOMERS = 1_500  # leases a sibling's refreshes leave: ~270 kB of them in SQLite
LEASE_BOUND_BYTES = 200_000


class StoreConformance:
    """Behaviour every store must have (threads only)."""

    def make_store(self, base: Path) -> Store:
        """A new store whose data lives under ``base``."""
        raise NotImplementedError

    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[Store]:
        store = self.make_store(tmp_path)
        yield store
        store.close()

    def test_missing_key_is_the_missing_sentinel(self, store: Store) -> None:
        assert store.get("absent") is MISSING

    def test_value_round_trips_byte_for_byte(self, store: Store) -> None:
        value = bytes(range(256)) * 4
        store.put("k", value)
        assert store.get("k") == value

    def test_empty_value_is_not_missing(self, store: Store) -> None:
        store.put("empty", b"")
        assert store.get("empty") == b""

    def test_put_replaces_the_old_value(self, store: Store) -> None:
        store.put("k", b"old")
        store.put("k", b"new")
        assert store.get("k") == b"new"

    def test_delete_removes_and_tolerates_absent_keys(self, store: Store) -> None:
        store.put("k", b"v")
        store.delete("k")
        store.delete("never-there")
        assert store.get("k") is MISSING

    def test_unicode_keys_and_large_values(self, store: Store) -> None:
        key = "snapshot:客户-ü-🚀"
        value = b"\x00\xff" * (LARGE_VALUE_BYTES // 2)
        store.put(key, value)
        assert store.get(key) == value
        assert key in set(store.keys("snapshot:"))

    def test_keys_lists_by_prefix_only(self, store: Store) -> None:
        for key in ("a:1", "a:2", "a_b:3", "a%c:4", "b:1", "A:1"):
            store.put(key, b"x")
        assert sorted(store.keys("a:")) == ["a:1", "a:2"]
        assert sorted(store.keys("a%")) == ["a%c:4"]
        assert sorted(store.keys("a_")) == ["a_b:3"]
        assert len(list(store.keys())) == 6

    def test_keys_are_counted_by_prefix_as_listed(self, store: Store) -> None:
        for key in ("snapshot:1", "snapshot:2", "snapshot:3", "a:1", "b"):
            store.put(key, b"x")
        store.put("snapshot:1", b"again")  # a key rewritten counts once
        store.delete("snapshot:2")
        store.delete("snapshot:never-there")
        for prefix in ("snapshot:", "snap", "a:", "b", ""):
            assert count_keys(store, prefix) == len(list(store.keys(prefix))), prefix
        assert count_keys(store, "snapshot:") == 2

    def test_overwrites_are_atomic_under_concurrent_readers(self, store: Store) -> None:
        values = [bytes([65 + n]) * 200_000 for n in range(WRITERS)]
        store.put("shared", values[0])
        torn: list[int] = []
        stop = threading.Event()

        def write(value: bytes) -> None:
            for _ in range(WRITES_PER_WRITER // 5):
                store.put("shared", value)

        def read() -> None:
            while not stop.is_set():
                seen = store.get("shared")
                if seen is MISSING or seen not in values:
                    torn.append(1)

        readers = [threading.Thread(target=read) for _ in range(2)]
        writers = [threading.Thread(target=write, args=(v,)) for v in values]
        for thread in readers + writers:
            thread.start()
        for thread in writers:
            thread.join(timeout=60)
        stop.set()
        for thread in readers:
            thread.join(timeout=60)
        assert not torn
        assert store.get("shared") in values

    def test_concurrent_writer_threads_lose_nothing(self, store: Store) -> None:
        def write(writer: int) -> None:
            for n in range(WRITES_PER_WRITER):
                store.put(f"t{writer}:{n}", f"{writer}-{n}".encode())

        threads = [threading.Thread(target=write, args=(w,)) for w in range(WRITERS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        for writer in range(WRITERS):
            assert len(list(store.keys(f"t{writer}:"))) == WRITES_PER_WRITER
            assert store.get(f"t{writer}:7") == f"{writer}-7".encode()

    def test_store_works_again_after_close_and_reopen(self, tmp_path: Path) -> None:
        first = self.make_store(tmp_path)
        first.put("k", b"v")
        first.close()
        second = self.make_store(tmp_path)
        try:
            second.put("k2", b"v2")
            assert second.get("k2") == b"v2"
        finally:
            second.close()

    @pytest.mark.parametrize(
        "damage",
        [
            pytest.param(lambda v: v[: len(v) // 2], id="truncated"),
            pytest.param(lambda v: v[:-1] + bytes([v[-1] ^ 1]), id="bit-flipped"),
            pytest.param(lambda _v: b"\x80\x04\x95garbage", id="garbage"),
            pytest.param(lambda _v: b"", id="empty"),
        ],
    )
    def test_damaged_snapshot_entry_is_a_reported_miss(self, store: Store, damage: object) -> None:
        snapshot = Snapshot(
            "c-1", None, {"f": FeatureEntitlement("f", "BOOLEAN", is_granted=True)}, 1.0
        )
        key = snapshot_key("c-1", None)
        assert callable(damage)
        store.put(key, damage(encode_snapshot(snapshot)))
        faults: list[str] = []
        cache = SnapshotCache(store, SYSTEM_CLOCK, lambda event, _e: faults.append(event))
        assert cache.get("c-1", None) is None
        assert faults == ["store_entry_unusable"]

    def test_snapshot_round_trips_through_the_store(self, store: Store) -> None:
        snapshot = Snapshot(
            "c-ü", "r-1", {"f": FeatureEntitlement("f", "BOOLEAN", is_granted=True)}, 5.0
        )
        SnapshotCache(store, SYSTEM_CLOCK, lambda *_: None).put(snapshot, 0.0)
        fresh = SnapshotCache(store, SYSTEM_CLOCK, lambda *_: None)
        cached = fresh.get("c-ü", "r-1")
        assert cached is not None
        assert cached.snapshot == snapshot

    def test_a_lease_has_one_holder_until_it_runs_out_or_is_given_back(self, store: Store) -> None:
        if not isinstance(store, Leases):
            pytest.skip("this store has no refresh leases: each process refreshes for itself")
        assert store.lease("refresh:c", "a", 30.0)
        assert not store.lease("refresh:c", "b", 30.0)
        assert store.lease("refresh:c", "a", 30.0)  # its holder renews it
        assert store.lease("refresh:other", "b", 30.0)  # leases are per key
        assert store.lease("refresh:c", "a", 0.0)  # given back
        assert store.lease("refresh:c", "b", 0.05)
        time.sleep(0.2)  # a holder that died: its lease runs out by itself
        assert store.lease("refresh:c", "a", 30.0)
        assert "refresh:c" not in set(store.keys("refresh:"))  # leases are not entries

    def test_a_fence_refuses_the_writes_of_readers_that_looked_before_it(
        self, store: Store
    ) -> None:
        before = generation_of(store, "snapshot:c")
        store.put("snapshot:c", b"old")
        fence_of(store, "snapshot:c")  # an invalidation: the value goes, the generation moves
        assert store.get("snapshot:c") is MISSING
        assert not put_fenced(store, "snapshot:c", b"from before it", before)
        assert store.get("snapshot:c") is MISSING
        after = generation_of(store, "snapshot:c")
        assert after != before
        assert put_fenced(store, "snapshot:c", b"new", after)
        assert store.get("snapshot:c") == b"new"
        assert generation_of(store, "snapshot:other") == 0  # generations are per key
        assert set(store.keys("snapshot:")) == {"snapshot:c"}  # fences are not entries


def _take_lease(url: str, owner: str, taken: Any) -> None:
    store = open_store(url)
    try:
        if isinstance(store, Leases) and store.lease("refresh:shared", owner, 30.0):
            taken.put(owner)
    finally:
        store.close()


def _lease_customers(url: str, customers: int, ttl_s: float) -> None:
    """Refresh leases of ``customers`` customers, as a sibling's refreshes take them."""
    store = open_store(url)
    try:
        assert isinstance(store, Leases)
        for n in range(customers):
            store.lease(f"refresh:{snapshot_key(f'c-{n}', None)}", f"sibling:{ttl_s}", ttl_s)
    finally:
        store.close()


def _write_from_process(url: str, writer: int, count: int) -> None:
    store = open_store(url)
    try:
        for n in range(count):
            store.put(f"p{writer}:{n}", f"{writer}-{n}".encode() * 100)
            store.put("shared", bytes([65 + writer]) * 100_000)
    finally:
        store.close()


class DurableStoreConformance(StoreConformance):
    """Behaviour of stores that persist and are shared between processes."""

    def store_url(self, base: Path) -> str:
        """A URL ``open_store`` resolves to a store under ``base``."""
        raise NotImplementedError

    def make_store(self, base: Path) -> Store:
        return open_store(self.store_url(base))

    def test_values_survive_close_and_reopen(self, tmp_path: Path) -> None:
        first = self.make_store(tmp_path)
        first.put("k", b"kept")
        first.close()
        second = self.make_store(tmp_path)
        try:
            assert second.get("k") == b"kept"
        finally:
            second.close()

    def test_one_of_several_processes_gets_a_lease(self, tmp_path: Path) -> None:
        url = self.store_url(tmp_path)
        store = self.make_store(tmp_path)
        leases = isinstance(store, Leases)
        store.close()
        if not leases:
            pytest.skip("this store has no refresh leases: each process refreshes for itself")
        context = multiprocessing.get_context("spawn")
        taken = context.Queue()
        workers = [
            context.Process(target=_take_lease, args=(url, f"p{n}", taken)) for n in range(4)
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=120)
            assert worker.exitcode == 0
        holders = []
        with contextlib.suppress(queue.Empty):  # every worker has exited: all it put is there
            while True:
                holders.append(taken.get(timeout=1))
        assert len(holders) == 1

    def test_refresh_leases_of_another_process_never_push_a_snapshot_out(
        self, tmp_path: Path
    ) -> None:
        """Leases are bookkeeping: those that ran out go, and no lease counts against the
        byte bound (they filled it once, and every sweep deleted every snapshot)."""
        store = self.make_store(tmp_path)
        try:
            if not isinstance(store, Leases) or not isinstance(store, Pruning):
                pytest.skip("this store has no refresh leases or does not prune")
            store.keep_for(SNAPSHOT_PREFIX, 3600.0, LEASE_BOUND_BYTES)
            key = snapshot_key("fetched-just-before", None)
            store.put(key, b"s" * 4_000)
            context = multiprocessing.get_context("spawn")
            for ttl_s in (0.001, 600.0):  # run out by the time the process has exited; held
                worker = context.Process(
                    target=_lease_customers,
                    args=(self.store_url(tmp_path), LEASED_CUSTOMERS, ttl_s),
                )
                worker.start()
                worker.join(timeout=120)
                assert worker.exitcode == 0
            for _ in range(3):  # sweep after sweep
                store.prune(1_000)
            assert store.get(key) == b"s" * 4_000
        finally:
            store.close()

    def test_concurrent_writer_processes_lose_nothing(self, tmp_path: Path) -> None:
        url = self.store_url(tmp_path)
        self.make_store(tmp_path).close()
        context = multiprocessing.get_context("spawn")
        workers = [
            context.Process(target=_write_from_process, args=(url, w, WRITES_PER_WRITER))
            for w in range(3)
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=120)
            assert worker.exitcode == 0
        store = self.make_store(tmp_path)
        try:
            for writer in range(3):
                assert len(list(store.keys(f"p{writer}:"))) == WRITES_PER_WRITER
                assert store.get(f"p{writer}:9") == f"{writer}-9".encode() * 100
            assert store.get("shared") in {bytes([65 + w]) * 100_000 for w in range(3)}
        finally:
            store.close()

    def test_read_only_it_reads_what_was_written_and_writes_nothing(self, tmp_path: Path) -> None:
        writer = self.make_store(tmp_path)
        writer.put("snapshot:k", b"kept")
        writer.close()
        reader = open_store(self.store_url(tmp_path), read_only=True)
        try:
            assert reader.get("snapshot:k") == b"kept"
            assert reader.get("snapshot:absent") is MISSING
            assert list(reader.keys("snapshot:")) == ["snapshot:k"]
            with pytest.raises(StiggCacheError):
                reader.put("snapshot:k", b"changed")
        finally:
            reader.close()
        again = self.make_store(tmp_path)
        try:
            assert again.get("snapshot:k") == b"kept"
        finally:
            again.close()

    def test_read_only_where_nothing_is_it_creates_nothing(self, tmp_path: Path) -> None:
        """A file store raises StoreNotFoundError; a server's (Redis) opens empty. Either
        way, no file or folder appears."""
        before = sorted(tmp_path.rglob("*"))
        try:
            store = open_store(self.store_url(tmp_path), read_only=True)
        except StoreNotFoundError:
            pass  # a file store: there is nothing to open
        else:
            try:
                assert list(store.keys("")) == []
            finally:
                store.close()
        assert sorted(tmp_path.rglob("*")) == before
