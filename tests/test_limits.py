"""Limits on what an outage, a caller or a local user can make us hold or read."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from stigg_cache import OutboxFullError
from stigg_cache.errors import CorruptEntryError, StoreError
from stigg_cache.outbox.records import (
    MAX_DIMENSION_NAME_CHARS,
    MAX_DIMENSION_TEXT_CHARS,
    MAX_DIMENSIONS,
    event_record,
)
from stigg_cache.outbox.sqlite import SqliteOutbox
from stigg_cache.stores import open_store
from stigg_cache.stores.disk import DiskStore
from stigg_cache.testing.fake import FakeMode, FakeStigg
from tests.conftest import MakeClient

NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("dimensions", "message"),
    [
        ({f"d{n}": n for n in range(MAX_DIMENSIONS + 1)}, "at most 100 dimensions"),
        ({"x" * (MAX_DIMENSION_NAME_CHARS + 1): 1}, "names are at most 256"),
        ({"prompt": "y" * (MAX_DIMENSION_TEXT_CHARS + 1)}, "text values are at most 10000"),
    ],
)
def test_event_dimensions_are_bounded(dimensions: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        event_record({"customer_id": "c", "event_name": "e", "dimensions": dimensions}, NOW)


def test_a_full_outbox_refuses_usage_loudly_and_keeps_what_it_holds(
    fake: FakeStigg, make_client: MakeClient
) -> None:
    fake.set_mode(FakeMode.DOWN)
    client = make_client(outbox_max_records=10)
    client.report_event([{"customer_id": "acme", "event_name": "e"} for _ in range(10)])
    with pytest.raises(OutboxFullError, match="NOT recorded"):
        client.report_event([{"customer_id": "acme", "event_name": "e"}])
    assert client.status().outbox_depth == 10
    fake.set_mode(FakeMode.UP)
    client.get_boolean_entitlement(customer_id="acme", feature_id="sso")  # reconnects
    assert client.flush(timeout=20).drained
    client.report_event([{"customer_id": "acme", "event_name": "e"}])  # room again


def test_the_disk_store_never_reads_a_file_outside_its_folder(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"the user's private key")
    directory = tmp_path / "disk"
    store = DiskStore(directory)
    store.put("k", b"v")
    store.close()
    with sqlite3.connect(directory / "cache.db") as db:  # what a writer of the folder can do
        db.execute(
            "UPDATE Cache SET mode = 2, filename = ?, value = NULL WHERE key = 'k'",
            ("../secret.txt",),
        )
    store = DiskStore(directory)
    with pytest.raises(CorruptEntryError, match="outside the store"):
        store.get("k")
    store.close()


@pytest.mark.parametrize("kind", ["store", "outbox"])
def test_a_symlink_where_a_file_of_ours_goes_is_not_followed(tmp_path: Path, kind: str) -> None:
    target = tmp_path / "somebody-elses-file"
    target.write_bytes(b"not ours")
    link = tmp_path / "cache.db"
    link.symlink_to(target)

    def opening() -> object:
        return open_store(f"sqlite:///{link}") if kind == "store" else SqliteOutbox(link)

    with pytest.raises(StoreError, match="symbolic links"):
        opening()
    assert target.read_bytes() == b"not ours"
