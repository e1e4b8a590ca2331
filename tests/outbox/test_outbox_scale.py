"""The SQLite outbox reads its depth, it does not count it (#17)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from stigg_cache.outbox.base import KEEP_SENT_S, OutboxStats
from stigg_cache.outbox.records import RecordKind
from stigg_cache.outbox.sqlite import _STATS, SqliteOutbox
from stigg_cache.testing.outbox_conformance import NOW, events, units


def _counted(path: Path) -> tuple[int, int, int]:
    """Depth, recently sent and dead letters, counted row by row (the slow, sure way)."""
    with sqlite3.connect(path) as db:
        pending = db.execute("SELECT count(*) FROM outbox WHERE state = 'pending'").fetchone()
        sent = db.execute("SELECT count(*) FROM outbox WHERE state = 'sent'").fetchone()
        dead = db.execute("SELECT count(*) FROM dead_letters").fetchone()
    return pending[0], sent[0], dead[0]


def _shown(stats: OutboxStats) -> tuple[int, int, int]:
    return stats.pending, stats.sent_unsettled, stats.dead_letters


def test_stats_never_scan_the_outbox(tmp_path: Path) -> None:
    SqliteOutbox(tmp_path / "o.db").close()
    with sqlite3.connect(tmp_path / "o.db") as db:
        plan = [row[3] for row in db.execute("EXPLAIN QUERY PLAN " + _STATS, (NOW, NOW))]
    scans = [step for step in plan if step.startswith("SCAN")]
    assert {step.split()[1] for step in scans} <= {"CONSTANT", "outbox_counts"}, plan


def test_the_counts_kept_with_the_rows_match_the_rows_through_every_move(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    box = SqliteOutbox(path)

    def agree() -> None:
        assert _shown(box.stats(NOW)) == _counted(path)

    box.enqueue([*events(6), *units(4)], NOW)
    box.enqueue(events(2), NOW)  # duplicates: nothing added
    agree()
    claimed = box.claim(RecordKind.EVENT, 6, "a", now=NOW, lease_s=30)
    assert box.stats(NOW).leased == 6
    ids = [c.id for c in claimed]
    box.settle(sent=ids[:2], retry=ids[2:4], dead=ids[4:], owner="a", now=NOW, retry_at=NOW)
    box.settle(sent=ids[:2], owner="a", now=NOW)  # acknowledged twice: counted once
    agree()
    assert box.requeue() == 2
    agree()
    (usage, *_) = box.claim(RecordKind.USAGE, 4, "b", now=NOW, lease_s=30)
    box.settle(dead=[usage.id], owner="b", now=NOW, reason="refused")
    assert box.purge() == 1
    agree()
    box.forget(ids[2:4])
    agree()
    box.settle(owner="a", now=NOW + KEEP_SENT_S + 1)  # sent rows kept long enough go
    agree()
    assert _shown(box.stats(NOW)) == (5, 0, 0)
    box.close()
