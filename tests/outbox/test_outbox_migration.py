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


def _usage(key: str) -> UsageRecord:
    return usage_record(
        {"customer_id": "c", "feature_id": "f", "value": 1, "idempotency_key": key}, NOW
    )


def _event(key: str) -> UsageRecord:
    return event_record(
        {"customer_id": "c", "event_name": "page.view", "idempotency_key": key}, NOW
    )
