"""Snapshots survive restarts; damaged or planted store entries never reach a check."""

from __future__ import annotations

import json
import os
import pickle
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stigg_cache import ResilientClient, Source
from stigg_cache._support.files import private_file
from stigg_cache.errors import CorruptEntryError
from stigg_cache.stores import open_store
from stigg_cache.stores._codec import pack, snapshot_key
from stigg_cache.stores.disk import DiskStore
from stigg_cache.stores.sqlite import TABLE
from stigg_cache.testing import runtime_of
from stigg_cache.testing.fake import FakeMode, FakeStigg
from tests.conftest import API_KEY, MakeClient
from tests.helpers import eventually

CHILD = """
import sys, json
from stigg_cache import ResilientClient, FallbackPolicy, Staleness
policy = FallbackPolicy(staleness=Staleness(fresh_for_s=float(sys.argv[3]), max_staleness_s=3600))
with ResilientClient(None, api_key=sys.argv[4], base_url=sys.argv[2], store=sys.argv[1],
                     policy=policy, check_timeout=0.3) as client:
    r = client.get_metered_entitlement(customer_id="acme", feature_id="api_calls")
    print(json.dumps([r.decision.source.value, r.has_access, r.current_usage]))
"""


def _run_child(store_url: str, base_url: str, fresh_for_s: float) -> list[object]:

    done = subprocess.run(
        [sys.executable, "-c", CHILD, store_url, base_url, str(fresh_for_s), API_KEY],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return list(json.loads(done.stdout))


@pytest.mark.parametrize("scheme", ["sqlite", "disk"])
def test_a_new_process_answers_from_the_store_while_stigg_is_down(
    fake: FakeStigg, tmp_path: Path, scheme: str
) -> None:
    url = f"{scheme}:///{tmp_path}/store"
    assert _run_child(url, fake.url, 60) == ["LIVE", True, 40]
    fake.set_mode(FakeMode.DOWN)
    assert _run_child(url, fake.url, 60) == ["CACHE", True, 40]
    assert _run_child(url, fake.url, 0.001) == ["STALE", True, 40]


def test_corrupt_sqlite_entry_is_refetched_and_reported(
    fake: FakeStigg, make_client: MakeClient, tmp_path: Path
) -> None:
    client = make_client()
    client.get_boolean_entitlement(customer_id="acme", feature_id="sso")
    client.close()
    with sqlite3.connect(tmp_path / "cache.db") as db:
        db.execute(
            f"UPDATE {TABLE} SET value = substr(value, 1, 50) WHERE key = ?",
            (snapshot_key("acme", None),),
        )
    reopened = make_client()
    result = reopened.get_boolean_entitlement(customer_id="acme", feature_id="sso")
    assert result.decision.source is Source.LIVE
    assert fake.entitlement_requests() == 2
    status = reopened.status()
    assert status.faults["stigg_cache.store_entry_unusable"] == 1
    assert status.store_healthy


def test_an_entry_an_earlier_version_wrote_is_a_quiet_miss_replaced_for_every_process(
    fake: FakeStigg, make_client: MakeClient, tmp_path: Path
) -> None:
    """A rolling upgrade: the store holds codec-3 entries; the first check in the new
    version refetches without a fault, and another process then reads what it wrote."""
    old = make_client()
    old.get_metered_entitlement(customer_id="acme", feature_id="api_calls")
    old.close()
    key = snapshot_key("acme", None)
    with sqlite3.connect(tmp_path / "cache.db") as db:
        ((value,),) = db.execute(f"SELECT value FROM {TABLE} WHERE key = ?", (key,))
        db.execute(f"UPDATE {TABLE} SET value = ? WHERE key = ?", (b"SCS3" + value[4:], key))
    reopened = make_client()
    result = reopened.get_metered_entitlement(customer_id="acme", feature_id="api_calls")
    assert result.decision.source is Source.LIVE
    assert fake.entitlement_requests() == 2
    assert reopened.status().faults == {}
    fake.set_mode(FakeMode.DOWN)
    assert _run_child(f"sqlite:///{tmp_path}/cache.db", fake.url, 60) == ["CACHE", True, 40]


def _plant_malformed_feature(path: Path) -> None:
    value = pack(
        {
            "customerId": "acme",
            "resourceId": None,
            "fetchedAt": time.time(),
            "data": {"entitlements": []},
        },
        {"sso": {"type": "FEATURE", "isGranted": "yes", "feature": {"id": "sso"}}},
    )
    with sqlite3.connect(path) as db:
        db.execute(
            f"INSERT OR REPLACE INTO {TABLE} (key, value, updated_at) VALUES (?, ?, 0)",
            (snapshot_key("acme", None), value),
        )


def test_well_framed_entry_with_a_malformed_feature_never_reaches_a_check(
    fake: FakeStigg, make_client: MakeClient, tmp_path: Path
) -> None:
    make_client().close()  # creates the store
    _plant_malformed_feature(tmp_path / "cache.db")
    client = make_client()
    result = client.get_boolean_entitlement(customer_id="acme", feature_id="sso")
    assert (result.decision.source, result.has_access) == (Source.LIVE, True)
    assert client.status().faults["stigg_cache.store_entry_unusable"] == 1
    client.close()  # its LIVE snapshot lands in the store after the answer: let it land first
    _plant_malformed_feature(tmp_path / "cache.db")
    fresh = make_client()
    snapshot = fresh.get_entitlements(customer_id="acme")  # materialised: never a lazy surprise
    assert snapshot.decision is not None
    assert snapshot.decision.source is Source.LIVE
    assert dict(snapshot.entitlements)["sso"].is_granted


def test_unwritable_store_degrades_but_checks_keep_answering(
    fake: FakeStigg, make_client: MakeClient, tmp_path: Path
) -> None:
    client = make_client()
    runtime_of(client).parts.cache.store.close()  # every later store call now fails
    result = client.get_boolean_entitlement(customer_id="acme", feature_id="sso")
    again = client.get_boolean_entitlement(customer_id="acme", feature_id="sso")
    assert (result.decision.source, again.decision.source) == (Source.LIVE, Source.CACHE)
    eventually(lambda: not client.status().store_healthy)  # written after the answer
    assert client.status().faults["stigg_cache.store_write_failed"]
    del fake, tmp_path


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.mkdir, (str(self.marker),))


def test_disk_store_refuses_a_planted_pickle_and_runs_nothing(tmp_path: Path) -> None:
    import diskcache

    directory = tmp_path / "disk"
    marker = tmp_path / "pwned"
    DiskStore(directory).close()
    planted = diskcache.Cache(str(directory))  # the default Disk: what an attacker would use
    planted.set(snapshot_key("acme", None), _Exploit(marker))
    planted.set(_Exploit(marker), b"pickled key")
    planted.close()
    assert pickle.dumps(_Exploit(marker))  # the payload is a working pickle

    store = DiskStore(directory)
    with pytest.raises(CorruptEntryError):
        store.get(snapshot_key("acme", None))
    with pytest.raises(CorruptEntryError):
        list(store.keys())
    store.close()
    with ResilientClient(
        None,
        api_key="k",
        base_url="http://127.0.0.1:9",
        store=f"disk:///{directory}",
        check_timeout=0.1,
    ) as client:
        result = client.get_boolean_entitlement(customer_id="acme", feature_id="sso")
        assert result.decision.source is Source.DEFAULT
        assert client.status().faults["stigg_cache.store_entry_unusable"] == 1
    assert not marker.exists()


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("scheme", ["sqlite", "disk"])
def test_store_files_are_private_even_under_a_permissive_umask(tmp_path: Path, scheme: str) -> None:
    old = os.umask(0)
    try:
        store = open_store(f"{scheme}:///{tmp_path}/a/b/store")
        store.put("small", b"x")
        store.put("large", b"y" * (5 * 1024 * 1024))  # big enough for a diskcache value file
        store.close()
    finally:
        os.umask(old)
    created = list((tmp_path / "a").rglob("*"))
    assert created
    for path in created:
        assert _mode(path) == (0o700 if path.is_dir() else 0o600), path
    assert _mode(tmp_path / "a") == 0o700


def test_sqlite_wal_and_shm_files_are_private_while_open(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        store = open_store(f"sqlite:///{tmp_path}/db/cache.db")
        store.put("k", b"v")
        sidecars = [tmp_path / "db" / name for name in ("cache.db-wal", "cache.db-shm")]
        assert all(path.exists() for path in sidecars)
        assert [_mode(path) for path in sidecars] == [0o600, 0o600]
        store.close()
    finally:
        os.umask(old)


def test_disk_store_round_trips_values_kept_in_files(tmp_path: Path) -> None:
    store = DiskStore(tmp_path / "d")
    value = os.urandom(5 * 1024 * 1024)
    store.put("big", value)
    assert store.get("big") == value
    assert list((tmp_path / "d").rglob("*.val"))
    store.close()


def test_l1_is_bounded_by_entries_and_bytes_and_admits_what_is_asked_for_more_often() -> None:
    from stigg_cache._support.clock import SYSTEM_CLOCK
    from stigg_cache.core.admission import FrequencySketch
    from stigg_cache.models import Snapshot
    from stigg_cache.stores.layered import DECODED_PER_STORED_BYTE, SnapshotCache
    from stigg_cache.stores.memory import MemoryStore
    from stigg_cache.testing.fake import boolean

    def snapshot(customer: str, features: int) -> Snapshot:
        return Snapshot(customer, None, {f"f{n}": boolean(f"f{n}") for n in range(features)}, 1.0)

    by_count = SnapshotCache(MemoryStore(), SYSTEM_CLOCK, lambda *_: None, max_entries=2)
    # The sketch counts by hash(), which differs from run to run: customers who share no
    # counter with each other, so that what is tested is admission, not luck.
    sketch, taken = FrequencySketch(2), set(FrequencySketch(2)._cells(("a", None)))

    def apart(prefix: str) -> str:
        name = next(
            f"{prefix}{n}"
            for n in range(1_000)
            if taken.isdisjoint(sketch._cells((f"{prefix}{n}", None)))
        )
        taken.update(sketch._cells((name, None)))
        return name

    b, c = apart("b"), apart("c")
    for customer in ("a", b):
        by_count.put(snapshot(customer, 1), 0.0)
    assert by_count.peek(("a", None)) is not None  # a is now the most recently used
    by_count.put(snapshot(c, 1), 0.0)  # full: c was asked for no more often than b
    assert set(by_count.l1) == {("a", None), (b, None)}
    assert by_count.get(c, None) is not None  # asked for (from the store): now it is
    assert set(by_count.l1) == {("a", None), (c, None)}  # the least recently used went

    from stigg_cache.stores._codec import encode_snapshot

    def held(one: Snapshot) -> int:
        return int(len(encode_snapshot(one)) * DECODED_PER_STORED_BYTE)

    big, small, other = snapshot("big", 20), snapshot("small", 1), snapshot("other", 20)
    budget = held(big) + held(small) + 10
    by_bytes = SnapshotCache(MemoryStore(), SYSTEM_CLOCK, lambda *_: None, max_bytes=budget)
    by_bytes.put(big, 0.0)
    by_bytes.put(small, 0.0)
    assert set(by_bytes.l1) == {("big", None), ("small", None)}  # both fit
    by_bytes.put(other, 0.0)
    assert by_bytes.get("other", None) is not None  # asked for: admitted, big goes
    assert ("big", None) not in by_bytes.l1
    assert by_bytes.l1_bytes <= budget
    assert by_bytes.l1_bytes == sum(entry.held_bytes for entry in by_bytes.l1.values())


def test_opening_a_store_again_never_drops_the_locks_of_connections_already_open(
    tmp_path: Path,
) -> None:
    # Closing any descriptor of a database file drops every POSIX lock the process
    # holds on it. Found by a chaos run ("disk I/O error" with two stores on one file).
    path = tmp_path / "cache.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN IMMEDIATE")  # a write lock on the database file
    private_file(path)  # what every store and outbox does when it opens
    other = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sqlite3, sys; sqlite3.connect(sys.argv[1], timeout=0).execute('BEGIN IMMEDIATE')",
            str(path),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    holder.execute("ROLLBACK")
    holder.close()
    assert "database is locked" in other.stderr, other.stderr
