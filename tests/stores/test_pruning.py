"""Stores drop what no check can use any more (issue 17): snapshots past the policy's
longest ``max_staleness`` are swept away, in passes of bounded work, and a file store
stays within ``store_max_bytes`` under churn (the least recently used, written or read,
go first)."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from stigg_cache import FallbackPolicy, ResilientClient, Source, Staleness
from stigg_cache._support.clock import SYSTEM_CLOCK
from stigg_cache.models import Snapshot
from stigg_cache.policy import Grant, Rule
from stigg_cache.policy.model import PLAN_MEMORY_S
from stigg_cache.stores._codec import SNAPSHOT_PREFIX, encode_snapshot, snapshot_key
from stigg_cache.stores.base import MISSING
from stigg_cache.stores.disk import DiskStore
from stigg_cache.stores.layered import SnapshotCache
from stigg_cache.stores.sqlite import LEASES, TABLE, SqliteStore
from stigg_cache.testing import runtime_of
from stigg_cache.testing.fake import FakeMode, FakeStigg, boolean
from tests.forking import in_child
from tests.helpers import client_on

HOUR = 3600.0
POLICY = FallbackPolicy(staleness=Staleness(fresh_for_s=60, max_staleness_s=HOUR))


def _snapshot(customer: str, features: int = 20) -> Snapshot:
    flags = {f"f{n}": boolean(f"f{n}") for n in range(features)}
    return Snapshot(customer, None, flags, time.time())


def _stored(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return int(db.execute(f"SELECT count(*) FROM {TABLE}").fetchone()[0])


def _age(path: Path, customers: list[str], seconds: float) -> None:
    """As if those snapshots were written ``seconds`` ago."""
    with sqlite3.connect(path) as db:
        db.executemany(
            f"UPDATE {TABLE} SET updated_at = updated_at - ? WHERE key = ?",
            [(seconds, snapshot_key(c, None)) for c in customers],
        )


def test_snapshots_past_the_longest_max_staleness_are_swept_in_another_worker_too(
    fake: FakeStigg, tmp_path: Path
) -> None:
    client = client_on(fake, tmp_path, policy=POLICY)
    store = tmp_path / "cache.db"
    old = [f"old-{n}" for n in range(1_000)]
    for customer in [*old, "fresh"]:
        runtime_of(client).parts.cache.put(_snapshot(customer), time.monotonic())
    _age(store, old, 2 * HOUR)  # past the hour any feature may use them
    assert (
        in_child(runtime_of(client).parts.cache.sweep) == 1_000
    )  # a forked worker sweeps the shared store
    assert _stored(store) == 1
    fresh = client.get_entitlements(customer_id="fresh").decision
    assert fresh is not None
    assert fresh.source is Source.CACHE
    assert runtime_of(client).parts.cache.sweep() == 0  # nothing left to sweep
    client.close()


def test_a_policy_matching_plans_keeps_snapshots_a_month(tmp_path: Path) -> None:
    rule = Rule("pro", {"*": Grant(has_access=True)}, plans=("pro",))
    policy = FallbackPolicy(
        staleness=Staleness(fresh_for_s=60, max_staleness_s=HOUR), rules=(rule,)
    )
    assert policy.keep_snapshots_s == PLAN_MEMORY_S  # expired snapshots still name the plan
    assert POLICY.keep_snapshots_s == HOUR


def test_the_sweep_runs_by_itself_while_snapshots_are_written(
    fake: FakeStigg, tmp_path: Path
) -> None:
    cache = SnapshotCache(
        SqliteStore(tmp_path / "s.db"), SYSTEM_CLOCK, lambda *_: None, keep_for=lambda: HOUR
    )
    cache.put(_snapshot("old"), 0.0)
    _age(tmp_path / "s.db", ["old"], 2 * HOUR)
    cache.upkeep.sweeping.due_now()
    cache.put(_snapshot("new"), 0.0)  # a write starts the background sweep
    deadline = time.monotonic() + 10
    while cache.pruned == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert cache.pruned == 1
    assert _stored(tmp_path / "s.db") == 1
    cache.store.close()


def test_a_sqlite_store_stays_within_its_byte_bound_under_churn(tmp_path: Path) -> None:
    bound = 2_000_000
    path = tmp_path / "churn.db"
    cache = SnapshotCache(
        SqliteStore(path), SYSTEM_CLOCK, lambda *_: None, keep_for=lambda: HOUR,
        store_max_bytes=bound,
    )  # fmt: skip
    for n in range(6_000):  # ~27 MB of snapshots written, over and over new customers
        cache.put(_snapshot(f"c{n}"), 0.0)
        if n % 40 == 39:  # a sweep per 40 writes (176 KB, a tenth of the bound)
            cache.sweep()
    cache.sweep()
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    assert path.stat().st_size <= 1.1 * bound  # freed pages are reused: the file stays
    assert _stored(path) < 6_000 / 5  # the least recently written went
    assert cache.get("c5999", None) is not None  # the newest stayed
    cache.store.close()


def test_the_disk_store_uses_diskcaches_own_expiry_and_size_limit(tmp_path: Path) -> None:
    store = DiskStore(tmp_path / "disk")
    store.keep_for(SNAPSHOT_PREFIX, 0.2, 200_000)
    for n in range(50):
        store.put(snapshot_key(f"c{n}", None), encode_snapshot(_snapshot(f"c{n}")))
    assert store._cache.volume() <= 200_000 * 1.5  # diskcache culled as it went
    time.sleep(0.3)
    store.prune(1_000)
    assert list(store.keys(SNAPSHOT_PREFIX)) == []  # expired
    store.close()


@pytest.mark.parametrize("option", [0, -5])
def test_a_store_bound_must_be_positive(fake: FakeStigg, tmp_path: Path, option: int) -> None:
    with pytest.raises(ValueError, match="store_max_bytes"):
        ResilientClient(None, api_key="k", base_url=fake.url, store=f"sqlite:///{tmp_path}/c.db",
                        store_max_bytes=option)  # fmt: skip


def test_beyond_the_byte_bound_the_least_recently_read_go_first_in_every_worker(
    tmp_path: Path,
) -> None:
    path = tmp_path / "read.db"
    cache = SnapshotCache(
        SqliteStore(path), SYSTEM_CLOCK, lambda *_: None, keep_for=lambda: HOUR,
        store_max_bytes=2_000_000,
    )  # fmt: skip
    old = [f"old-{n}" for n in range(400)]  # ~1.8 MB, the first written first
    for customer in old:
        cache.put(_snapshot(customer), 0.0)
    read = old[:50]  # the oldest written, but read since

    def reads() -> int:
        for customer in read:
            assert cache.get(customer, None) is not None  # from the store: into L1
        return cache.sweep()

    in_child(reads)  # a forked worker reads them; its sweep tells the store
    for n in range(300):  # ~1.35 MB more: the file is over its bound
        cache.put(_snapshot(f"new-{n}"), 0.0)
    while cache.sweep():
        pass
    kept = {c for c in old if cache.store.get(snapshot_key(c, None)) is not MISSING}
    assert set(read) <= kept  # read lately: kept over the unread written after them
    assert len(kept) < len(old) / 2  # the unread went
    cache.store.close()


def test_a_store_written_before_reads_were_noted_is_migrated_on_open(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:  # the table as versions before this one made it
        db.execute(f"CREATE TABLE {TABLE} (key TEXT PRIMARY KEY, value BLOB, updated_at FLOAT)")
        db.execute(f"INSERT INTO {TABLE} VALUES ('snapshot:a', x'00', 12.5)")
    store = SqliteStore(path)
    assert store.get("snapshot:a") == b"\x00"
    store.close()
    with sqlite3.connect(path) as db:
        assert db.execute(f"SELECT used_at FROM {TABLE}").fetchall() == [(12.5,)]


def _snapshots_left(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return int(db.execute(f"SELECT count(*) FROM {TABLE}").fetchone()[0])


def _leases_left(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return int(db.execute(f"SELECT count(*) FROM {LEASES}").fetchone()[0])


def test_a_worker_restarted_in_an_outage_answers_from_a_snapshot_whatever_leases_were_left(
    fake: FakeStigg, tmp_path: Path
) -> None:
    """Issue 28 #4: 1,500 customers refreshed by a sibling left 1,501 lease rows (270 kB); with
    a 200 kB bound every sweep deleted every snapshot, and a worker restarted during an
    outage answered DEFAULT for a customer fetched 2 s before."""
    bound = {"policy": POLICY, "store_max_bytes": 200_000}
    client = client_on(fake, tmp_path, **bound)
    others = [f"c-{n}" for n in range(1_500)]

    def refresh_others() -> int:  # a sibling worker: each first check takes a refresh lease
        for customer in others:
            client.get_boolean_entitlement(customer_id=customer, feature_id="sso")
        return _leases_left(store)

    store = tmp_path / "cache.db"
    assert in_child(refresh_others) == 1_500
    _age(store, others, 2 * HOUR)  # their snapshots are of no use now: their leases remain
    fetched = client.get_boolean_entitlement(customer_id="acme", feature_id="sso").decision
    assert fetched is not None
    assert fetched.source is Source.LIVE
    in_child(runtime_of(client).parts.cache.sweep)  # workers sweep in turn (and in the background)
    runtime_of(client).parts.cache.sweep()
    client.close()
    fake.set_mode(FakeMode.DOWN)
    restarted = client_on(fake, tmp_path, **bound)
    answer = restarted.get_boolean_entitlement(customer_id="acme", feature_id="sso").decision
    restarted.close()
    assert answer is not None
    assert (answer.source, _snapshots_left(store)) == (Source.CACHE, 1)


def test_refresh_leases_that_ran_out_or_were_given_back_are_swept(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "leases.db")
    store.keep_for(SNAPSHOT_PREFIX, HOUR, None)
    for n in range(1_000):
        store.lease(f"refresh:c-{n}", "a", 0.0)  # given back at once (a failed fetch)
    store.lease("refresh:held", "a", HOUR)
    assert _leases_left(tmp_path / "leases.db") == 1_001
    store.prune(1_000)
    assert _leases_left(tmp_path / "leases.db") == 1  # only the one still held
    assert not store.lease("refresh:held", "b", HOUR)
    store.close()
