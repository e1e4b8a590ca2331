"""The host's journal of offline decisions in the SQLite outbox (``SharedJournal``).

One row per kind of decision (its key, count, first and last time, characters), and
one row under the empty key counting the decisions the bound kept out. The table is
made when first written: files of older versions gain it then, and older versions
sharing the file never read it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from stigg_cache.core.reconcile import JournalRow

_TABLE = (
    "CREATE TABLE IF NOT EXISTS offline_decisions (kind TEXT PRIMARY KEY, "
    "count INTEGER NOT NULL, first_at REAL NOT NULL, last_at REAL NOT NULL, "
    "chars INTEGER NOT NULL)"
)
_UNCOVERED = ""  # the row that counts decisions not covered


def journal_add(
    db: sqlite3.Connection, rows: Sequence[JournalRow], uncovered: int, *, size: int, chars: int
) -> None:
    """Count ``rows`` in, within ``size`` kinds and ``chars`` characters (in the caller's
    write transaction)."""
    db.execute(_TABLE)
    ((kinds, used),) = db.execute(
        "SELECT count(*), coalesce(sum(chars), 0) FROM offline_decisions WHERE kind != ?",
        (_UNCOVERED,),
    ).fetchall()
    for key, count, first_at, last_at, held in rows:
        widened = db.execute(
            "UPDATE offline_decisions SET count = count + ?, first_at = min(first_at, ?), "
            "last_at = max(last_at, ?) WHERE kind = ?",
            (count, first_at, last_at, key),
        )
        if widened.rowcount:
            continue
        if kinds < size and used + held <= chars:
            db.execute(
                "INSERT INTO offline_decisions VALUES (?, ?, ?, ?, ?)",
                (key, count, first_at, last_at, held),
            )
            kinds, used = kinds + 1, used + held
        else:
            uncovered += count
    if uncovered:
        db.execute(
            "INSERT INTO offline_decisions VALUES (?, ?, 0, 0, 0) "
            "ON CONFLICT (kind) DO UPDATE SET count = count + excluded.count",
            (_UNCOVERED, uncovered),
        )


def journal_take(db: sqlite3.Connection) -> tuple[list[JournalRow], int]:
    """Every kind and the count not covered; the table empties (in the caller's write
    transaction)."""
    db.execute(_TABLE)
    found = db.execute(
        "SELECT kind, count, first_at, last_at, chars FROM offline_decisions"
    ).fetchall()
    db.execute("DELETE FROM offline_decisions")
    rows = [(str(k), int(n), float(f), float(la), int(c)) for k, n, f, la, c in found if k]
    return rows, sum(int(n) for k, n, *_ in found if not k)
