# ruff: noqa: S608 - SQL is built only from constant column lists
"""Which rows of the SQLite outbox a claim takes, with no index an enqueue pays for.

A row is *new* until it is first leased (``leased_at`` is 0). New rows are not indexed
by state: a claim finds those of its kind by rowid, above the kind's frontier
(``outbox_frontier``), and moves the frontier past what it looked at. Below a kind's
frontier, every pending row of that kind has been leased at least once: in flight,
waiting for a retry or given back. Those few are indexed apart (``idx_outbox_returned``).

The frontier never passes a row a claim should find:

* SQLite adds a row at ``max(id) + 1``, and a frontier is never past the last row.
  A claim moves it at most to the last row it looked at. Deleting the last rows brings
  it back down (the ``outbox_frontier_below_end`` trigger), so an id SQLite gives again
  is above it.
* A claim moves it past a new row of its kind only when it leases that row in the same
  transaction. From then on the row is in the index of rows leased once, since nothing
  sets ``leased_at`` back to 0.

Workers of older schemas never read or move the frontier. What they add lands at the
end, and what they lease is indexed with the rest. A file they wrote keeps its
``(state, kind, id)`` index, which their claims read.
"""

from __future__ import annotations

import sqlite3
from operator import itemgetter
from typing import Any

from stigg_cache.outbox._sqlite_schema import COLUMNS
from stigg_cache.outbox.base import CLOCK_STEP_S

SCAN_IDS = 10_000  # ids one step of a claim's look for new rows covers
MOST_STEPS = 5  # steps a claim takes at most (past rows of the other kind, and sent rows)
# Due now, and not leased now. A retry set, or a lease taken, well "in the future"
# (``CLOCK_STEP_S``: the wall clock has since stepped back) counts as due / expired.
SENDABLE = "(next_attempt_at <= ? OR retry_set_at > ?) AND (lease_until <= ? OR leased_at > ?)"
_RETURNED = (
    f"SELECT id, {COLUMNS}, attempts FROM outbox INDEXED BY idx_outbox_returned "
    f"WHERE kind = ? AND state = 'pending' AND leased_at != 0 AND {SENDABLE} ORDER BY id LIMIT ?"
)
_NEW = (
    f"SELECT id, {COLUMNS}, attempts, {SENDABLE} FROM outbox NOT INDEXED "
    "WHERE id > ? AND id <= ? AND kind = ? AND state = 'pending' AND leased_at = 0 "
    "ORDER BY id LIMIT ?"
)
_END = "SELECT coalesce(max(id), 0) FROM outbox"
# Any row of the kind at all (an index probe): if none, nothing of it is new before the end.
_ANY_OF_KIND = "SELECT 1 FROM outbox INDEXED BY idx_outbox_kind_idem_key WHERE kind = ? LIMIT 1"

# The oldest pending record's stamp: the first row leased once of each kind, and the first
# new row above the lowest frontier (records are enqueued in order: a record stamped in the
# past and enqueued late is not looked for). The second reads by rowid the rows between the
# lowest frontier and the first new row: rows the other kind's claims took, which claims of
# the lagging kind pass ``SCAN_IDS * MOST_STEPS`` at a time.
_FIRST_RETURNED = (
    "SELECT (SELECT stamped_at FROM outbox INDEXED BY idx_outbox_returned WHERE state = 'pending' "
    "AND leased_at != 0 AND kind = '{}' ORDER BY id LIMIT 1)"
)
OLDEST = (
    f"SELECT min(stamped_at) FROM ({_FIRST_RETURNED.format('event')} AS stamped_at "
    f"UNION ALL {_FIRST_RETURNED.format('usage')} UNION ALL SELECT (SELECT stamped_at "
    "FROM outbox NOT INDEXED WHERE id > (SELECT min(id) FROM outbox_frontier) "
    "AND state = 'pending' AND leased_at = 0 ORDER BY id LIMIT 1))"
)
# An idle claim puts the pending count right: no row is pending if none leased once is, and
# every frontier is at the end (no new row of either kind).
RECOUNT_IF_EMPTY = (
    "UPDATE outbox_counts SET n = 0 WHERE state = 'pending' AND n != 0 AND NOT EXISTS "
    "(SELECT 1 FROM outbox INDEXED BY idx_outbox_returned WHERE state = 'pending' "
    f"AND leased_at != 0) AND (SELECT min(id) FROM outbox_frontier) >= ({_END})"
)

Row = tuple[Any, ...]


def claimable(db: sqlite3.Connection, kind: str, limit: int, now: float) -> list[Row]:
    """The oldest sendable rows of ``kind``, at most ``limit`` (``id``, the record's columns,
    ``attempts``), which the caller leases in this same write transaction.

    The kind's frontier moves up to the first new row not among them.
    """
    sendable = (now, now + CLOCK_STEP_S, now, now + CLOCK_STEP_S)
    returned = db.execute(_RETURNED, (kind, *sendable, limit)).fetchall()
    ((start,),) = db.execute("SELECT id FROM outbox_frontier WHERE kind = ?", (kind,)).fetchall()
    new, seen = _new_rows(db, kind, start, limit, sendable)
    rows = sorted([*returned, *(row[:-1] for row in new if row[-1])], key=itemgetter(0))[:limit]
    taken = {row[0] for row in rows}
    for row in new:  # a new row left (not due, or past the limit) stops the frontier below it
        if row[0] not in taken or not now:  # leased at wall time 0, it would still look new
            seen = row[0] - 1
            break
    if seen > start:
        db.execute("UPDATE outbox_frontier SET id = ? WHERE kind = ?", (seen, kind))
    return rows


def _new_rows(
    db: sqlite3.Connection, kind: str, start: int, limit: int, sendable: tuple[float, ...]
) -> tuple[list[Row], int]:
    """New rows of ``kind`` above ``start``, oldest first, each with whether it is due; and
    the id up to which every row was looked at."""
    ((end,),) = db.execute(_END).fetchall()
    if start < end and not db.execute(_ANY_OF_KIND, (kind,)).fetchall():
        return [], end
    found: list[Row] = []
    seen = start
    for _ in range(MOST_STEPS):
        if seen >= end or len(found) >= limit:
            break
        top = min(seen + SCAN_IDS, end)
        rows = db.execute(_NEW, (*sendable, seen, top, kind, limit - len(found))).fetchall()
        found += rows
        seen = rows[-1][0] if len(found) >= limit else top
    return found, seen
