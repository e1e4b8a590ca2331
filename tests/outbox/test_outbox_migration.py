"""An outbox file written by the previous schema opens, and nothing in it is lost."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from stigg_cache.outbox._sqlite_schema import SCHEMA_VERSION
from stigg_cache.outbox.records import RecordKind, UsageRecord, event_record, usage_record
from stigg_cache.outbox.sqlite import SqliteOutbox

NOW = 1_800_000_000.0
# What stigg-cache 0.1.0.dev created: every record field a column of its own.
OLD_SCHEMA = """
CREATE TABLE outbox (id INTEGER PRIMARY KEY, kind TEXT NOT NULL, idem_key TEXT NOT NULL,
  customer_id TEXT NOT NULL, resource_id TEXT, name TEXT NOT NULL, value REAL, behavior TEXT,
  dimensions TEXT, stamped_at REAL, payload TEXT NOT NULL, enqueued_at REAL,
  state TEXT NOT NULL DEFAULT 'pending', attempts INTEGER DEFAULT 0,
  next_attempt_at REAL DEFAULT 0.0, lease_owner TEXT, lease_until REAL DEFAULT 0.0,
  acked_at REAL, last_error TEXT);
CREATE UNIQUE INDEX idx_outbox_kind_idem_key ON outbox (kind, idem_key);
CREATE INDEX idx_outbox_state_kind_id ON outbox (state, kind, id);
CREATE TABLE dead_letters (id INTEGER PRIMARY KEY, kind TEXT, idem_key TEXT, customer_id TEXT,
  resource_id TEXT, name TEXT, value REAL, behavior TEXT, dimensions TEXT, stamped_at REAL,
  payload TEXT, reason TEXT, dead_at REAL, attempts INTEGER);
INSERT INTO outbox (id, kind, idem_key, customer_id, name, value, dimensions, stamped_at, payload,
  enqueued_at) VALUES (2, 'usage', 'u1', 'c', 'f', 3.0, '{}', 1800000000.0,
  '{"customerId":"c","featureId":"f","value":3.0,"updateBehavior":"DELTA","idempotencyKey":"u1","createdAt":"2027-01-15T08:00:00+00:00","dimensions":{},"resourceId":null}',
  1800000000.0);
INSERT INTO outbox (id, kind, idem_key, customer_id, name, value, dimensions, stamped_at, payload,
  enqueued_at) VALUES (3, 'event', 'k2', 'c', 'e', 1.0, '{"a":1}', 1800000000.0,
  '{"customerId":"c","eventName":"e","idempotencyKey":"k2","dimensions":{"a":1},"resourceId":null,"timestamp":"2027-01-15T08:00:00+00:00"}',
  1800000000.0);
INSERT INTO dead_letters VALUES (1, 'event', 'k1', 'c', NULL, 'e', 1.0, '{}', '{}', 1800000000.0,
  '{"customerId":"c","eventName":"e","idempotencyKey":"k1","dimensions":{},"resourceId":null,"timestamp":"2027-01-15T08:00:00+00:00"}',
  'HTTP 400', 1800000001.0, 1);
"""


def test_an_outbox_of_the_previous_schema_is_migrated_in_place(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    with sqlite3.connect(path) as db:
        db.executescript(OLD_SCHEMA)
    box = SqliteOutbox(path)
    try:  # every row names its customer: a process reads one customer's usage
        assert sorted(h.record.idempotency_key for h in box.held_of("c", None)) == ["k2", "u1"]
        (event,) = box.claim(RecordKind.EVENT, 10, "a", now=NOW, lease_s=30)
        assert (event.record.idempotency_key, dict(event.record.dimensions)) == ("k2", {"a": 1})
        (usage,) = box.claim(RecordKind.USAGE, 10, "a", now=NOW, lease_s=30)
        assert (usage.record.name, usage.record.value, usage.record.update_behavior) == (
            "f",
            3.0,
            "DELTA",
        )
        (letter,) = box.dead_letters()
        assert (letter.record.idempotency_key, letter.reason) == ("k1", "HTTP 400")
        assert box.requeue() == 1
        assert sorted(h.record.idempotency_key for h in box.held_of("c", None)) == [
            "k1",
            "k2",
            "u1",
        ]
    finally:
        box.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        columns = {row[1] for row in db.execute("PRAGMA table_info(outbox)")}
    assert "customer_id" not in columns
    assert {"kind", "idem_key", "stamped_at", "payload", "state"} <= columns


def test_an_outbox_of_schema_7_keeps_only_counting_rows_in_the_changes_index(
    tmp_path: Path,
) -> None:
    path = tmp_path / "outbox.db"
    SqliteOutbox(path).close()
    with sqlite3.connect(path) as db:  # as schema 7 left it: every row indexed by seq
        db.execute("DROP INDEX idx_outbox_counted_seq")
        db.execute("CREATE INDEX idx_outbox_seq ON outbox (seq)")
        db.execute("DROP TABLE outbox_schema")  # kept since schema 9
        db.execute("PRAGMA user_version = 7")
    box = SqliteOutbox(path)
    try:
        box.enqueue([_usage("u1"), _event("k1")], NOW)
        assert [h.record.idempotency_key for h in box.changes(-1).held] == ["u1"]
    finally:
        box.close()
    with sqlite3.connect(path) as db:
        indexes = {row[1]: row[2] for row in db.execute("PRAGMA index_list(outbox)")}
        plan = " ".join(
            str(row[3])
            for row in db.execute(
                "EXPLAIN QUERY PLAN SELECT id FROM outbox WHERE seq > 0 AND customer IS NOT NULL"
            )
        )
    assert "idx_outbox_seq" not in indexes
    assert "idx_outbox_counted_seq" in indexes
    assert "idx_outbox_counted_seq" in plan  # changes() reads the index, not the table


_USAGE = {"customer_id": "c", "feature_id": "f", "value": 1}


def _usage(key: str) -> UsageRecord:
    return usage_record({**_USAGE, "idempotency_key": key}, NOW)


def _event(key: str) -> UsageRecord:
    return event_record(
        {"customer_id": "c", "event_name": "page.view", "idempotency_key": key}, NOW
    )


# What stigg-cache created at schema 8, with records as a host left them: u1 sent, k2
# pending, and k3, the newest row, dead-lettered under its row id 3, which SQLite gives
# to the next record enqueued.
SCHEMA_8 = """
CREATE TABLE outbox (id INTEGER PRIMARY KEY, kind TEXT NOT NULL, idem_key TEXT NOT NULL,
  stamped_at REAL, payload TEXT NOT NULL, enqueued_at REAL, state TEXT NOT NULL DEFAULT
  'pending', attempts INTEGER DEFAULT 0, next_attempt_at REAL DEFAULT 0.0, retry_set_at REAL
  DEFAULT 0.0, lease_owner TEXT, leased_at REAL DEFAULT 0.0, lease_until REAL DEFAULT 0.0,
  acked_at REAL, last_error TEXT, seq INTEGER DEFAULT 0, counted REAL, customer TEXT);
CREATE UNIQUE INDEX idx_outbox_kind_idem_key ON outbox (kind, idem_key);
CREATE INDEX idx_outbox_state_kind_id ON outbox (state, kind, id);
CREATE INDEX idx_outbox_counted_seq ON outbox (seq) WHERE customer IS NOT NULL;
CREATE INDEX idx_outbox_counted_customer ON outbox (customer) WHERE customer IS NOT NULL;
CREATE INDEX idx_outbox_leased ON outbox (lease_until) WHERE lease_owner IS NOT NULL;
CREATE TABLE dead_letters (id INTEGER PRIMARY KEY, kind TEXT, idem_key TEXT, stamped_at REAL,
  payload TEXT, reason TEXT, dead_at REAL, attempts INTEGER, seq INTEGER NOT NULL DEFAULT 0);
CREATE INDEX idx_dead_letters_seq ON dead_letters (seq);
CREATE TABLE usage_seq (n INTEGER NOT NULL);
CREATE TABLE outbox_counts (state TEXT PRIMARY KEY, n INTEGER NOT NULL);
INSERT INTO usage_seq VALUES (3);
INSERT INTO outbox_counts VALUES ('pending', 1), ('sent', 1), ('dead', 1);
PRAGMA user_version = 8;
"""


def _schema_8(path: Path) -> tuple[UsageRecord, UsageRecord]:
    sent, pending, dead = _usage("u1"), _event("k2"), _usage("k3")
    with sqlite3.connect(path) as db:
        db.executescript(SCHEMA_8)
        db.executemany(
            "INSERT INTO outbox (id, kind, idem_key, stamped_at, payload, state, acked_at, "
            "customer, seq) VALUES (?, ?, ?, ?, ?, ?, ?, 'c', ?)",
            [
                (1, "usage", "u1", NOW, sent.payload, "sent", NOW, 2),
                (2, "event", "k2", NOW, pending.payload, "pending", None, 1),
            ],
        )
        db.execute(
            "INSERT INTO dead_letters (id, kind, idem_key, stamped_at, payload, reason, dead_at, "
            "attempts, seq) VALUES (3, 'usage', 'k3', ?, ?, 'HTTP 400', ?, 1, 3)",
            (NOW, dead.payload, NOW),
        )
    return sent, pending


def test_an_outbox_of_schema_8_numbers_dead_letters_apart_and_scopes_keys_to_customers(
    tmp_path: Path,
) -> None:
    path = tmp_path / "outbox.db"
    sent, pending = _schema_8(path)
    box = SqliteOutbox(path)
    try:
        box.enqueue([_usage("u4")], NOW)  # row id 3 again: k3's dead letter's number
        (claimed,) = box.claim(RecordKind.USAGE, 10, "a", now=NOW, lease_s=30)
        box.settle(dead=[claimed.id], owner="a", now=NOW, reason="HTTP 400")
        letters = box.dead_letters()
        assert [(d.id, d.record.idempotency_key) for d in letters] == [(3, "k3"), (4, "u4")]
        retries = box.enqueue([sent, pending], NOW)  # the same records, keys as stored before
        assert [r.duplicate for r in retries] == [True, True]
        other = usage_record({**_USAGE, "customer_id": "other", "idempotency_key": "u1"}, NOW)
        assert not box.enqueue([other], NOW)[0].duplicate  # the key is c's, not other's
        assert box.stats(NOW).dead_letters == 2
    finally:
        box.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        assert db.execute("SELECT version FROM outbox_schema").fetchall() == [(SCHEMA_VERSION,)]


def test_a_worker_of_the_previous_version_keeps_working_on_a_migrated_file(
    tmp_path: Path,
) -> None:
    """A deploy: old and new workers share the file for a while. The statements a schema-8
    worker runs still work on it, and the migration is not run again after it."""
    path = tmp_path / "outbox.db"
    _schema_8(path)
    SqliteOutbox(path).close()  # a new worker migrates the file
    old = _event("old-worker")
    with sqlite3.connect(path, isolation_level=None) as db:  # a schema-8 worker, as it runs
        assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        db.execute("PRAGMA user_version = 8")  # it sets the schema it knows on every open
        db.execute("CREATE INDEX IF NOT EXISTS idx_dead_letters_seq ON dead_letters (seq)")
        db.execute(
            "INSERT INTO outbox (kind, idem_key, stamped_at, payload, enqueued_at, customer, seq)"
            " VALUES (?, ?, ?, ?, ?, NULL, 4) ON CONFLICT(kind, idem_key) DO NOTHING",
            ("event", old.idempotency_key, NOW, old.payload, NOW),
        )
        db.execute(  # its dead letters take the outbox row's number: 3, k3's
            "INSERT INTO dead_letters (id, kind, idem_key, stamped_at, payload, reason, "
            "dead_at, attempts, seq) SELECT id, kind, idem_key, stamped_at, payload, 'HTTP 400',"
            " ?, 1, 5 FROM outbox WHERE idem_key = ?",
            (NOW, old.idempotency_key),
        )
        db.execute("DELETE FROM outbox WHERE idem_key = ?", (old.idempotency_key,))
    box = SqliteOutbox(path)  # a new worker again
    try:
        box.enqueue([_usage("new-worker")], NOW)
        (claimed,) = box.claim(RecordKind.USAGE, 10, "a", now=NOW, lease_s=30)
        box.settle(dead=[claimed.id], owner="a", now=NOW, reason="HTTP 400")
        letters = [(d.id, d.record.idempotency_key) for d in box.dead_letters()]
        assert letters == [(3, "old-worker"), (4, "k3"), (5, "new-worker")]  # k3 moved over
        assert [c.record.idempotency_key for c in box.claim(RecordKind.EVENT, 9, "a", now=NOW,
                                                             lease_s=30)] == ["k2"]  # fmt: skip
    finally:
        box.close()
    with sqlite3.connect(path) as db:  # not migrated again: the old worker's key stays its own
        assert db.execute("SELECT idem_key FROM dead_letters WHERE id = 3").fetchone() == (
            "old-worker",
        )
        assert db.execute("SELECT version FROM outbox_schema").fetchall() == [(SCHEMA_VERSION,)]
        assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
