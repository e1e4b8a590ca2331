"""The SQLite outbox finds new records above a claim frontier (schema 11): none is ever
stranded below it, none is claimed twice, and workers of schema 10 share the file."""

from __future__ import annotations

import random
import sqlite3
from collections import Counter
from pathlib import Path

import pytest

from stigg_cache.outbox import _sqlite_claims
from stigg_cache.outbox.base import KEEP_SENT_S, Claimed
from stigg_cache.outbox.records import RecordKind, UsageRecord, event_record, usage_record
from stigg_cache.outbox.sqlite import SqliteOutbox
from stigg_cache.testing.outbox_conformance import NOW, events, units

EVENT, USAGE = RecordKind.EVENT, RecordKind.USAGE
# A worker of schema 10, as it runs (its statements, verbatim).
V10_OPEN = (
    'CREATE INDEX IF NOT EXISTS "idx_outbox_state_kind_id" ON "outbox" ("state", "kind", "id")'
)
V10_INSERT = (
    "INSERT INTO outbox (kind, idem_key, stamped_at, payload, enqueued_at, customer, seq) "
    "VALUES (?,?,?,?,?,?,?) ON CONFLICT(kind, idem_key) DO NOTHING"
)
V10_CLAIM = (
    "SELECT id, kind, idem_key, stamped_at, payload, attempts FROM outbox WHERE state = 'pending' "
    "AND kind = ? AND (next_attempt_at <= ? OR retry_set_at > ?) AND (lease_until <= ? "
    "OR leased_at > ?) ORDER BY id LIMIT ?"
)
V10_RELEASE = (
    "UPDATE outbox SET lease_owner = NULL, lease_until = 0 "
    "WHERE lease_owner = ? AND state = 'pending'"
)
V10_SWEEP = "DELETE FROM outbox WHERE state = 'sent' AND acked_at < ?"


def _keys(claimed: list[Claimed]) -> list[str]:
    return [c.record.idempotency_key for c in claimed]


def _event(key: str) -> UsageRecord:
    return event_record({"customer_id": "c", "event_name": "e", "idempotency_key": key}, NOW)


def _send(box: SqliteOutbox, kind: RecordKind, owner: str = "a", now: float = NOW) -> list[str]:
    claimed = box.claim(kind, 100, owner, now=now, lease_s=30)
    box.settle(sent=[c.id for c in claimed], owner=owner, now=now)
    return _keys(claimed)


@pytest.mark.parametrize("how", ["swept", "dead-lettered", "forgotten", "deleted by schema 10"])
def test_records_enqueued_after_the_last_rows_went_are_claimed(tmp_path: Path, how: str) -> None:
    """SQLite gives the ids of deleted last rows again: the frontier comes back below them."""
    path = tmp_path / "o.db"
    box = SqliteOutbox(path)
    box.enqueue([_event("k1"), _event("k2"), _event("k3")], NOW)
    claimed = box.claim(EVENT, 10, "a", now=NOW, lease_s=30)  # the frontier passes all three
    ids = [c.id for c in claimed]
    if how == "swept":
        box.settle(sent=ids, owner="a", now=NOW)
        box.settle(owner="a", now=NOW + KEEP_SENT_S + 1)  # every row goes: the table is empty
    elif how == "dead-lettered":
        box.settle(sent=ids[:2], dead=ids[2:], owner="a", now=NOW, reason="refused")
    elif how == "forgotten":
        box.settle(sent=ids[:2], owner="a", now=NOW)
        box.forget(ids[2:])
    else:
        box.settle(sent=ids, owner="a", now=NOW)
        with sqlite3.connect(path) as db:
            db.execute(V10_SWEEP, (NOW + 1,))  # an older worker's sweep, later on its clock
    box.enqueue([_event("k4"), _event("k5")], NOW)  # ids given again
    assert _send(box, EVENT) == ["k4", "k5"]
    assert box.stats(NOW).pending == 0
    box.close()


@pytest.mark.parametrize("seed", range(6))
def test_every_record_is_claimed_once_whatever_happens_between_claims(
    tmp_path: Path, seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Random enqueues, claims, retries, releases, dead letters, requeues, deletions of the
    newest rows and sweeps; then everything left is drained. Each record is sent exactly
    once, and a claim never returns a record another owner holds."""
    monkeypatch.setattr(_sqlite_claims, "SCAN_IDS", 5)  # frontiers move in many small steps
    monkeypatch.setattr(_sqlite_claims, "MOST_STEPS", 2)
    rng = random.Random(seed)
    path = tmp_path / "o.db"
    box = SqliteOutbox(path)
    now, sent, expected = NOW, Counter[str](), set[str]()
    held: dict[int, str] = {}  # record id: its owner (leases outlast the test)
    for step in range(150):
        roll = rng.random()
        if roll < 0.3:
            batch = [_record(rng, f"{step}-{n}") for n in range(rng.randint(1, 6))]
            box.enqueue(batch, now)
            expected |= {r.idempotency_key for r in batch}
        elif roll < 0.6:
            owner = rng.choice("ab")
            kind = rng.choice([EVENT, USAGE])
            for c in box.claim(kind, rng.randint(1, 5), owner, now=now, lease_s=1e9):
                assert c.id not in held, "claimed while another owner holds it"
                held[c.id] = owner
        elif held:
            now = _move(box, path, rng, held, sent, expected, now)
    monkeypatch.undo()  # the drain looks as far as it takes
    box.release("a")
    box.release("b")
    box.requeue()
    for kind in (EVENT, USAGE):
        while keys := _send(box, kind, "z", now + 10):
            sent.update(keys)
    assert sent == Counter(expected)
    assert box.stats(now).pending == 0
    box.close()


def _record(rng: random.Random, key: str) -> UsageRecord:
    if rng.random() < 0.5:
        return _event(key)
    usage = {"customer_id": "c", "feature_id": "f", "value": 1, "idempotency_key": key}
    return usage_record(usage, NOW)


def _move(
    box: SqliteOutbox,
    path: Path,
    rng: random.Random,
    held: dict[int, str],
    sent: Counter[str],
    expected: set[str],
    now: float,
) -> float:
    """One of the moves a sender makes with what it holds, or an operator's."""
    owner = rng.choice(list(held.values()))
    mine = [id_ for id_, o in held.items() if o == owner]
    some = rng.sample(mine, rng.randint(1, len(mine)))
    move = rng.choice(["sent", "retry", "dead", "release", "forget newest", "sweep"])
    if move == "sent":
        box.settle(sent=some, owner=owner, now=now)
        with sqlite3.connect(path) as db:
            sent.update(_key_of(db, id_) for id_ in some)
    elif move == "retry":
        box.settle(retry=some, owner=owner, now=now, retry_at=now + 5, reason="429")
    elif move == "dead":
        box.settle(dead=some, owner=owner, now=now, reason="refused")
        if rng.random() < 0.5:
            box.requeue()  # they come back as new rows at the end
    elif move == "release":
        box.release(owner)
        some = mine
    elif move == "forget newest":  # moved to another outbox: no longer this one's to send
        with sqlite3.connect(path) as db:
            some = [i for (i,) in db.execute("SELECT id FROM outbox WHERE state = 'pending' "
                                             "ORDER BY id DESC LIMIT 2")]  # fmt: skip
            expected -= {_key_of(db, id_) for id_ in some}
        box.forget(some)
    else:
        now += 10  # retries come due; sent rows age, the oldest are swept
        box.settle(owner=owner, now=now + KEEP_SENT_S - 25)
        return now
    for id_ in some:
        held.pop(id_, None)
    return now


def _key_of(db: sqlite3.Connection, id_: int) -> str:
    ((key,),) = db.execute("SELECT idem_key FROM outbox WHERE id = ?", (id_,)).fetchall()
    return str(key).split("\n", 1)[1]


def test_a_claim_finds_a_kind_rare_in_the_outbox_and_its_depth_stays_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_sqlite_claims, "SCAN_IDS", 10)
    monkeypatch.setattr(_sqlite_claims, "MOST_STEPS", 2)
    box = SqliteOutbox(tmp_path / "o.db")
    box.enqueue([*units(1, "first"), *events(100), *units(1, "last")], NOW)
    assert _send(box, USAGE) == ["first0"]
    looks = 0
    while not (keys := _send(box, USAGE)):  # 20 ids a claim: past the events in steps
        looks += 1
        assert box.stats(NOW).pending == 101  # an empty look never zeroes the depth
        assert box.stats(NOW).oldest_pending_at == NOW
    assert (keys, looks) == (["last0"], 4)
    monkeypatch.undo()
    assert len(_send(box, EVENT)) == 100
    assert box.stats(NOW).pending == 0
    box.close()


def test_a_kind_absent_from_the_outbox_is_not_looked_for_row_by_row(tmp_path: Path) -> None:
    box = SqliteOutbox(tmp_path / "o.db")
    box.enqueue(events(30), NOW)
    assert box.claim(USAGE, 10, "a", now=NOW, lease_s=30) == []
    with sqlite3.connect(tmp_path / "o.db") as db:
        assert dict(db.execute("SELECT kind, id FROM outbox_frontier")) == {"event": 0, "usage": 30}
    box.close()


def test_a_worker_of_schema_10_shares_a_new_file(tmp_path: Path) -> None:
    """It adds its index when it opens the file, claims what it finds oldest, gives leases
    back, sweeps: every record is still sent once, by one worker or the other."""
    path = tmp_path / "o.db"
    box = SqliteOutbox(path)
    box.enqueue([_event("new1"), _event("new2"), _event("new3")], NOW)
    old = sqlite3.connect(path, isolation_level=None)
    old.execute(V10_OPEN)
    old_rows = [_event("old1"), _event("old2")]
    old.executemany(V10_INSERT, [(r.kind.value, f"c\n{r.idempotency_key}", NOW, r.payload,
                                  NOW, None, 1) for r in old_rows])  # fmt: skip
    sendable = (NOW, NOW + 60, NOW, NOW + 60)
    taken = old.execute(V10_CLAIM, ("event", *sendable, 2)).fetchall()
    old.execute("UPDATE outbox SET lease_owner = 'old', leased_at = ?, lease_until = ? "
                "WHERE id IN (?, ?)", (NOW, NOW + 30, taken[0][0], taken[1][0]))  # fmt: skip
    assert [row[2] for row in taken] == ["c\nnew1", "c\nnew2"]
    assert _send(box, EVENT) == ["new3", "old1", "old2"]  # never what the old worker holds
    old.execute(V10_RELEASE, ("old",))
    assert _send(box, EVENT) == ["new1", "new2"]
    old.execute(V10_SWEEP, (NOW + KEEP_SENT_S + 1,))  # the whole table, with the last row
    old.executemany(V10_INSERT, [("event", "c\nold3", NOW, _event("old3").payload, NOW, None,
                                  2)])  # fmt: skip
    box.enqueue([_event("new4")], NOW)
    assert old.execute(V10_CLAIM, ("event", *sendable, 10)).fetchall()[0][2] == "c\nold3"
    assert _send(box, EVENT) == ["old3", "new4"]
    old.close()
    box.close()


def test_a_migrated_file_keeps_the_index_older_workers_claim_by_and_a_new_one_has_none(
    tmp_path: Path,
) -> None:
    """Expand now, contract later: a worker of schema 10 still running on a migrated file
    claims through its index (a scan of a million rows took seconds without it)."""
    migrated, new = tmp_path / "migrated.db", tmp_path / "new.db"
    _schema_10(migrated)
    SqliteOutbox(migrated).close()
    SqliteOutbox(new).close()
    for path, has_it in ((migrated, True), (new, False)):
        with sqlite3.connect(path) as db:
            names = {n for (n,) in db.execute("SELECT name FROM sqlite_master WHERE type='index'")}
            plan = " ".join(r[3] for r in db.execute("EXPLAIN QUERY PLAN " + V10_CLAIM,
                                                     ("event", *[NOW] * 4, 1)))  # fmt: skip
        assert ("idx_outbox_state_kind_id" in names) is has_it
        assert ("USING INDEX idx_outbox_state_kind_id" in plan) is has_it, plan


def _schema_10(path: Path) -> None:
    """A file of schema 10 holding: k1 sent, k2 pending after a retry (leased once), k3 and
    k4 new, and u1 new usage."""
    box = SqliteOutbox(path)  # schema 11 tables, then taken back to what schema 10 had
    box.enqueue([_event("k1"), _event("k2"), _event("k3"), _event("k4")], NOW)
    box.enqueue(units(1), NOW)
    (k1, k2) = box.claim(EVENT, 2, "a", now=NOW, lease_s=30)
    box.settle(sent=[k1.id], retry=[k2.id], owner="a", now=NOW, retry_at=NOW + 5)
    box.close()
    with sqlite3.connect(path) as db:
        db.executescript(
            "DROP TABLE outbox_frontier; DROP TRIGGER outbox_frontier_below_end;"
            "DROP INDEX idx_outbox_returned; DROP INDEX idx_outbox_sent;"
            f"{V10_OPEN}; UPDATE outbox_schema SET version = 10; PRAGMA user_version = 10;"
        )


def test_a_migrated_file_s_frontiers_start_below_its_first_record_never_leased(
    tmp_path: Path,
) -> None:
    path = tmp_path / "o.db"
    _schema_10(path)
    box = SqliteOutbox(path)
    with sqlite3.connect(path) as db:
        assert dict(db.execute("SELECT kind, id FROM outbox_frontier")) == {"event": 2, "usage": 4}
    assert _send(box, EVENT) == ["k3", "k4"]  # k2 waits for its retry
    assert _send(box, USAGE) == ["u0"]
    assert _send(box, EVENT, now=NOW + 5) == ["k2"]
    box.close()


def test_a_record_leased_at_wall_time_zero_is_claimed_again_once_given_back(
    tmp_path: Path,
) -> None:
    """Its ``leased_at`` stays 0: the frontier must not pass it (a test clock may read 0)."""
    box = SqliteOutbox(tmp_path / "o.db")
    box.enqueue([_event("k1"), _event("k2")], 0.0)
    assert _keys(box.claim(EVENT, 1, "a", now=0.0, lease_s=30)) == ["k1"]
    box.release("a")
    assert _keys(box.claim(EVENT, 5, "a", now=0.0, lease_s=30)) == ["k1", "k2"]
    box.close()
