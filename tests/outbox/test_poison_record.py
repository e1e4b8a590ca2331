"""One record the outbox cannot decode never stops usage delivery, nor a start-up (#16)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from stigg_cache import ResilientClient
from stigg_cache.outbox.base import Claimed
from stigg_cache.outbox.records import RecordKind
from stigg_cache.outbox.sqlite import SqliteOutbox
from stigg_cache.testing.fake import FakeMode, FakeStigg
from tests.helpers import client_on, eventually

POISON = [  # kind, key, stamped_at, payload: as another program, or a bad disk, left them
    ("event", "not-json", 1.0, "{not json"),
    ("event", "no-fields", 1.0, "{}"),
    ("usage", "bad-stamp", "yesterday", '{"idempotencyKey": "bad-stamp"}'),
    ("weird", "no-such-kind", 1.0, "{}"),
]


def _events(client: ResilientClient, prefix: str, count: int) -> None:
    client.report_event(
        [
            {"customer_id": "acme", "event_name": "login", "idempotency_key": f"{prefix}{n}"}
            for n in range(count)
        ]
    )


def _plant(outbox_file: Path) -> None:
    with sqlite3.connect(outbox_file) as db:
        db.executemany(
            "INSERT INTO outbox (kind, idem_key, stamped_at, payload, enqueued_at, seq) "
            "VALUES (?, ?, ?, ?, 0, 0)",
            POISON,
        )


def test_a_client_starts_and_delivers_everything_else_past_poisoned_rows(
    fake: FakeStigg, tmp_path: Path
) -> None:
    first = client_on(fake, tmp_path)
    fake.set_mode(FakeMode.DOWN)
    _events(first, "before", 5)
    first.close()
    _plant(tmp_path / "cache-outbox.db")
    fake.set_mode(FakeMode.UP)
    client = client_on(fake, tmp_path)  # start-up reads every row: must not raise
    _events(client, "after", 5)
    assert client.flush(timeout=10).drained
    delivered = sorted(e["idempotencyKey"] for e in fake.account.events)
    assert delivered == sorted(
        [*(f"before{n}" for n in range(5)), *(f"after{n}" for n in range(5))]
    )
    letters = client.outbox.dead_letters()
    assert sorted(d.record.idempotency_key for d in letters) == sorted(p[1] for p in POISON)
    assert all(d.reason.startswith("unreadable in the outbox") for d in letters)
    client.close()


def test_a_running_flusher_survives_rows_poisoned_under_it(fake: FakeStigg, tmp_path: Path) -> None:
    client = client_on(fake, tmp_path)
    _events(client, "a", 3)
    assert client.flush(timeout=10).drained
    _plant(tmp_path / "cache-outbox.db")
    _events(client, "b", 3)
    assert client.flush(timeout=10).drained
    assert len(fake.account.events) == 6
    assert client.status().dead_letters == len(POISON)
    client.close()


class _Failing(SqliteOutbox):
    """An outbox whose claims fail with something no outbox is meant to raise, for a while."""

    failures = 0

    def claim(self, kind: RecordKind, limit: int, owner: str, **when: Any) -> list[Claimed]:
        if self.failures:
            self.failures -= 1
            raise KeyError("a bug in someone's outbox")
        return super().claim(kind, limit, owner, **when)


def test_the_flusher_survives_anything_says_so_once_and_recovers(
    fake: FakeStigg, tmp_path: Path, caplog: Any
) -> None:
    outbox = _Failing(tmp_path / "outbox.db")
    outbox.failures = 1_000_000
    client = client_on(fake, tmp_path, outbox=outbox)
    _events(client, "e", 3)
    eventually(lambda: client.status().outbox_error is not None)
    assert "a bug in someone's outbox" in (client.status().outbox_error or "")
    outbox.failures = 0
    assert client.flush(timeout=10).drained
    assert client.status().outbox_error is None
    logged: Sequence[str] = [
        r.getMessage() for r in caplog.records if "outbox_failed" in r.getMessage()
    ]
    assert len(logged) == 1
    client.close()
    outbox.close()
