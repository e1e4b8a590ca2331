# ruff: noqa: S608 - SQL is built only from constant column lists and table names
"""The SQLite outbox's tables, and the steps that bring a file of an older version to them.

Schema versions, each with what it brought:

2: a record is its wire payload (the other fields are derived from it).
3: leases and retries remember when they were set, so a wall clock stepped back
   (NTP, a chaos run) cannot strand a record until the clock catches up.
4: every change that moves local usage (a record added, acknowledged, dead,
   requeued) carries a sequence number, so every process of a host reads the
   same usage from the outbox (:meth:`SqliteOutbox.changes`).
5: sent usage keeps what Stigg answered it with (``counted``: the feature's usage once it
   counted the record), so every process settles it on that evidence.
6: counts of pending, sent and dead records kept with the rows (``outbox_counts``), so
   depth and dead letters are read, never counted by a scan; leased rows indexed apart.
7: rows that can count as local usage name their customer (``customer``, indexed), so a
   process reads one customer's usage when it first needs it, never the whole outbox.
8: only those rows are indexed by sequence number (``changes()`` reads no others), so an
   event no meter counts costs its enqueue and its acknowledgement one index write less.
9: dead letters are numbered on their own, never reusing a number (a record was filed
   under its outbox row id, which SQLite reuses: a second refusal then failed and the
   record stayed pending for ever); the version reached is kept in ``outbox_schema``.
10: ``idem_key`` holds the key scoped to its customer
   (:func:`~stigg_cache.outbox.records.scoped_key`).
11: an enqueue writes no index of state: a claim finds new rows above its kind's
   frontier (``outbox_frontier``, see ``_sqlite_claims``), rows leased once are indexed
   apart, sent rows by their acknowledgement. A file of an earlier schema keeps its
   ``(state, kind, id)`` index: workers of those versions read it while they share the
   file during a deploy (a later schema drops it, once none can be left).

Every step runs once per file: a worker of an older version sharing the file during
a deploy sets ``user_version`` back to its own when it opens it, so the version a
file reached is also kept in ``outbox_schema``, which older versions do not touch.
"""

from __future__ import annotations

from collections.abc import Callable

import sqlite_utils

SCHEMA_VERSION = 11
# The payload holds every field of a record: rows carry only what queries need.
COLUMNS = "kind, idem_key, stamped_at, payload"
_RECORD_FIELDS = {"kind": str, "idem_key": str, "stamped_at": float, "payload": str}
# The customer a stored payload names (NULL for one that is not JSON: it is never read back).
CUSTOMER_OF_PAYLOAD = "CASE WHEN json_valid(payload) THEN json_extract(payload, '$.customerId') END"
_DERIVED_COLUMNS = {"customer_id", "resource_id", "name", "value", "behavior", "dimensions"}
_REACHED = "SELECT version FROM outbox_schema"
_REACH = (
    "INSERT INTO outbox_schema (id, version) VALUES (1, ?) "
    "ON CONFLICT(id) DO UPDATE SET version = max(version, excluded.version)"
)


def _derived_columns_dropped(db: sqlite_utils.Database) -> None:
    """2 (files of stigg-cache 0.1.0.dev): a record is its payload."""
    for name in ("outbox", "dead_letters"):
        db[name].transform(drop=_DERIVED_COLUMNS)  # type: ignore[union-attr]


def _times_of_setting(db: sqlite_utils.Database) -> None:
    for column in ("leased_at", "retry_set_at"):
        db["outbox"].add_column(column, float, not_null_default=0.0)  # type: ignore[union-attr]


def _sequence_numbers(db: sqlite_utils.Database) -> None:
    for name in ("outbox", "dead_letters"):
        db[name].add_column("seq", int, not_null_default=0)  # type: ignore[union-attr]


def _counted_column(db: sqlite_utils.Database) -> None:
    db["outbox"].add_column("counted", float)  # type: ignore[union-attr]


def _counted_once(db: sqlite_utils.Database) -> None:
    """Count an older file's rows, once: the counts are kept with the rows after."""
    _create_counters(db)
    db.execute(
        "INSERT OR REPLACE INTO outbox_counts (state, n) "
        "SELECT state, count(*) FROM outbox GROUP BY state"
    )
    db.execute(
        "INSERT OR REPLACE INTO outbox_counts (state, n) SELECT 'dead', count(*) FROM dead_letters"
    )


def _customers_named(db: sqlite_utils.Database) -> None:
    """Once: name each row's customer (a row that does not decode names none)."""
    db["outbox"].add_column("customer", str)  # type: ignore[union-attr]
    db.execute(f"UPDATE outbox SET customer = {CUSTOMER_OF_PAYLOAD}")


def _seq_of_counted_only(db: sqlite_utils.Database) -> None:
    """Rows that cannot count as local usage leave the changes' index (made anew after)."""
    db.execute("DROP INDEX IF EXISTS idx_outbox_seq")


def _dead_letters_numbered_apart(db: sqlite_utils.Database) -> None:
    """Dead letters keep their numbers, and new ones take numbers never used before."""
    found = db.execute("SELECT sql FROM sqlite_master WHERE name = 'dead_letters'").fetchone()
    if found is None or "AUTOINCREMENT" in str(found[0]).upper():
        return  # made since (or by a new file's set-up)
    db.execute("ALTER TABLE dead_letters RENAME TO dead_letters_before_9")
    db.execute("DROP INDEX IF EXISTS idx_dead_letters_seq")  # it went with the old table
    _create_dead_letters(db)
    columns = f"id, {COLUMNS}, reason, dead_at, attempts, seq"
    db.execute(f"INSERT INTO dead_letters ({columns}) SELECT {columns} FROM dead_letters_before_9")
    db.execute("DROP TABLE dead_letters_before_9")


def _keys_scoped_to_customers(db: sqlite_utils.Database) -> None:
    """Each stored key scoped to its customer. A row whose scoped key another row holds (the
    same record, written again by a newer worker meanwhile) keeps its own: it is sent anyway."""
    for table in ("outbox", "dead_letters"):
        db.execute(
            f"UPDATE OR IGNORE {table} "
            "SET idem_key = json_extract(payload, '$.customerId') || char(10) || idem_key "
            "WHERE json_valid(payload) AND json_type(payload, '$.customerId') = 'text' "
            "AND idem_key = json_extract(payload, '$.idempotencyKey')"
        )


def _claim_frontiers(db: sqlite_utils.Database) -> None:
    """Once: each kind's frontier just below its first row never leased (every pending row
    of the kind below it has been leased), or at the end if it has none."""
    _create_frontier(db)
    for kind in ("event", "usage"):
        db.execute(
            "UPDATE outbox_frontier SET id = coalesce((SELECT id FROM outbox "
            "WHERE state = 'pending' AND kind = ?1 AND leased_at = 0 ORDER BY id LIMIT 1) - 1, "
            "(SELECT coalesce(max(id), 0) FROM outbox)) WHERE kind = ?1",
            (kind,),
        )


# (the schema version that brought it, the step that brings an older file to it)
_MIGRATIONS: tuple[tuple[int, Callable[[sqlite_utils.Database], None]], ...] = (
    (2, _derived_columns_dropped),
    (3, _times_of_setting),
    (4, _sequence_numbers),
    (5, _counted_column),
    (6, _counted_once),
    (7, _customers_named),
    (8, _seq_of_counted_only),
    (9, _dead_letters_numbered_apart),
    (10, _keys_scoped_to_customers),
    (11, _claim_frontiers),
)


def version_reached(db: sqlite_utils.Database) -> int:
    """The newest schema a file reached (an older worker may have set ``user_version`` back)."""
    marked = int(db.execute("PRAGMA user_version").fetchone()[0])
    if not db["outbox_schema"].exists():
        return marked
    return max([marked, *(int(v) for (v,) in db.execute(_REACHED).fetchall())])


def create(db: sqlite_utils.Database) -> None:
    """Set up a new file, or bring an older one to this schema from the newest it reached
    (inside the opening write transaction, on every open: see ``SqliteConnection``)."""
    marked = int(db.execute("PRAGMA user_version").fetchone()[0])
    reached = version_reached(db)
    if reached < SCHEMA_VERSION:
        _migrate(db, reached)
    _create_tables(db)
    if marked < SCHEMA_VERSION:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    if reached < SCHEMA_VERSION:
        db.execute(_REACH, (SCHEMA_VERSION,))


def _migrate(db: sqlite_utils.Database, version: int) -> None:
    """Bring tables an older stigg-cache wrote to this schema (new files have none)."""
    if db["outbox"].exists():
        for since, step in _MIGRATIONS:
            if version < since:
                step(db)


def _create_tables(db: sqlite_utils.Database) -> None:
    outbox = db["outbox"]
    outbox.create(  # type: ignore[union-attr]
        {
            "id": int,
            **_RECORD_FIELDS,
            "enqueued_at": float,
            "state": str,
            "attempts": int,
            "next_attempt_at": float,
            "retry_set_at": float,
            "lease_owner": str,
            "leased_at": float,
            "lease_until": float,
            "acked_at": float,
            "last_error": str,
            "seq": int,
            "counted": float,
            "customer": str,
        },
        pk="id",
        not_null={"kind", "idem_key", "payload", "state"},
        defaults={
            "state": "pending",
            "attempts": 0,
            "next_attempt_at": 0.0,
            "retry_set_at": 0.0,
            "leased_at": 0.0,
            "lease_until": 0.0,
            "seq": 0,
        },
        if_not_exists=True,
    )
    _create_indexes(db)
    _create_dead_letters(db)
    _create_counters(db)
    _create_frontier(db)


def _create_indexes(db: sqlite_utils.Database) -> None:
    """Indexes an enqueue writes: the key (unique), and two of rows that can count as local
    usage (other events cost them nothing). Rows leased once, sent rows and leased rows are
    indexed apart, so a new row costs those nothing either."""
    db["outbox"].create_index(["kind", "idem_key"], unique=True, if_not_exists=True)  # type: ignore[union-attr]
    db.execute(  # only records that can count as local usage: what changes() reads
        "CREATE INDEX IF NOT EXISTS idx_outbox_counted_seq ON outbox (seq) "
        "WHERE customer IS NOT NULL"
    )
    db.execute("DROP INDEX IF EXISTS idx_outbox_customer")  # all rows: a dev build's
    db.execute(
        "CREATE INDEX IF NOT EXISTS idx_outbox_counted_customer ON outbox (customer) "
        "WHERE customer IS NOT NULL"
    )
    db.execute(
        "CREATE INDEX IF NOT EXISTS idx_outbox_leased ON outbox (lease_until) "
        "WHERE lease_owner IS NOT NULL"
    )
    db.execute(
        "CREATE INDEX IF NOT EXISTS idx_outbox_returned ON outbox (kind, id) "
        "WHERE state = 'pending' AND leased_at != 0"
    )
    db.execute(
        "CREATE INDEX IF NOT EXISTS idx_outbox_sent ON outbox (acked_at) WHERE state = 'sent'"
    )


def _create_frontier(db: sqlite_utils.Database) -> None:
    """Each kind's claim frontier (see ``_sqlite_claims``), at 0 in a new file, and the
    trigger that keeps it from passing the last row: ids SQLite gives again after the last
    rows are deleted (by this or any older version) are then above it."""
    db.execute(
        "CREATE TABLE IF NOT EXISTS outbox_frontier (kind TEXT PRIMARY KEY, id INTEGER NOT NULL)"
    )
    db.execute("INSERT OR IGNORE INTO outbox_frontier (kind, id) VALUES ('event', 0), ('usage', 0)")
    db.execute(
        "CREATE TRIGGER IF NOT EXISTS outbox_frontier_below_end AFTER DELETE ON outbox "
        "WHEN OLD.id > (SELECT coalesce(max(id), 0) FROM outbox) BEGIN "
        "UPDATE outbox_frontier SET id = (SELECT coalesce(max(id), 0) FROM outbox) "
        "WHERE id > (SELECT coalesce(max(id), 0) FROM outbox); END"
    )


def _create_dead_letters(db: sqlite_utils.Database) -> None:
    """Numbered on their own, ``AUTOINCREMENT``: a number purged is never given again,
    so an operator's ``requeue``/``purge`` by number never meets another record.

    A worker of an older version (sharing the file during a deploy) files a dead letter
    under its outbox row's number; if that number is taken, the letter holding it moves
    to a new one first (the trigger), so that filing never fails either.
    """
    db.execute(
        "CREATE TABLE IF NOT EXISTS dead_letters (id INTEGER PRIMARY KEY AUTOINCREMENT, "
        "kind TEXT, idem_key TEXT, stamped_at REAL, payload TEXT, reason TEXT, "
        "dead_at REAL, attempts INTEGER, seq INTEGER NOT NULL DEFAULT 0)"
    )
    db.execute("CREATE INDEX IF NOT EXISTS idx_dead_letters_seq ON dead_letters (seq)")
    db.execute(
        "CREATE TRIGGER IF NOT EXISTS dead_letters_numbered BEFORE INSERT ON dead_letters "
        "WHEN NEW.id IN (SELECT id FROM dead_letters) BEGIN UPDATE dead_letters "
        "SET id = (SELECT max(id) + 1 FROM dead_letters) WHERE id = NEW.id; END"
    )


def _create_counters(db: sqlite_utils.Database) -> None:
    """What is kept with the rows: the changes' sequence number, the counts by state,
    the schema reached."""
    db.execute(
        "CREATE TABLE IF NOT EXISTS outbox_schema "
        "(id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL)"
    )
    db.execute("CREATE TABLE IF NOT EXISTS usage_seq (n INTEGER NOT NULL)")
    if not db.execute("SELECT count(*) FROM usage_seq").fetchone()[0]:
        db.execute("INSERT INTO usage_seq (n) VALUES (0)")
    db.execute(
        "CREATE TABLE IF NOT EXISTS outbox_counts (state TEXT PRIMARY KEY, n INTEGER NOT NULL)"
    )
    db.execute(
        "INSERT OR IGNORE INTO outbox_counts (state, n) "
        "VALUES ('pending', 0), ('sent', 0), ('dead', 0)"
    )
