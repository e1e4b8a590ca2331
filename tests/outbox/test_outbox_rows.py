"""How the SQLite outbox stores a bulk report: in its order, only counted records indexed."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from stigg_cache.outbox.records import event_record, usage_record
from stigg_cache.outbox.sqlite import SqliteOutbox
from stigg_cache.testing.outbox_conformance import NOW


def test_a_bulk_report_keeps_its_order_and_names_only_the_customers_of_counted_records(
    tmp_path: Path,
) -> None:
    box = SqliteOutbox(tmp_path / "o.db")
    box.counted_events = frozenset({"metered"})
    names = ["plain", "plain", "metered", "plain", "metered", "metered"]
    records = [
        event_record({"customer_id": "c", "event_name": name, "idempotency_key": f"k{n}"}, NOW)
        for n, name in enumerate(names)
    ]
    records.append(usage_record({"customer_id": "c", "feature_id": "f", "value": 1,
                                 "idempotency_key": "k6"}, NOW))  # fmt: skip
    before = box.cursor()
    assert not any(r.duplicate for r in box.enqueue(records, NOW))
    with sqlite3.connect(tmp_path / "o.db") as db:
        rows = db.execute("SELECT idem_key, customer, seq FROM outbox ORDER BY id").fetchall()
    counted = {"c\nk2", "c\nk4", "c\nk5", "c\nk6"}
    assert [key for key, _, _ in rows] == [f"c\nk{n}" for n in range(7)]  # the report's order
    assert [(c, s) for key, c, s in rows if key in counted] == [("c", before + 1)] * 4
    assert [(c, s) for key, c, s in rows if key not in counted] == [(None, 0)] * 3
    changes = box.changes(before)
    assert sorted(h.record.idempotency_key for h in changes.held) == ["k2", "k4", "k5", "k6"]
    box.enqueue([event_record({"customer_id": "c", "event_name": "plain"}, NOW)], NOW)
    assert box.cursor() == before + 1  # only events no meter counts: no change to follow
    assert box.enqueue(records[:2], NOW)[1].duplicate  # a known key is told apart, as ever
    box.close()
