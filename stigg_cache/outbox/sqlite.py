# ruff: noqa: S608 - SQL is built only from constant column lists and "?" placeholders
"""The default outbox: a SQLite file in WAL mode, shared by threads and processes.

Writes are ``BEGIN IMMEDIATE`` transactions with ``synchronous=FULL``: once
``enqueue`` returns, the records survive ``kill -9`` and power loss. Claims
take the oldest sendable rows and lease them in the same transaction, so two
processes never hold the same record at once.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from itertools import groupby
from pathlib import Path
from typing import Any

import sqlite_utils

from stigg_cache._support.files import private_file
from stigg_cache._support.sqlite import SqliteConnection, expect_table
from stigg_cache._support.url import not_found, path_from_url
from stigg_cache.core.reconcile import JournalRow
from stigg_cache.errors import ConfigurationError, StoreError
from stigg_cache.outbox import _sqlite_journal as _journal
from stigg_cache.outbox._sqlite_claims import OLDEST, RECOUNT_IF_EMPTY, claimable
from stigg_cache.outbox._sqlite_schema import (
    COLUMNS,
    CUSTOMER_OF_PAYLOAD,
    SCHEMA_VERSION,
    create,
    version_reached,
)
from stigg_cache.outbox.base import (
    KEEP_SENT_S,
    Claimed,
    DeadLetter,
    Held,
    OutboxStats,
    UsageChanges,
)
from stigg_cache.outbox.records import (
    Receipt,
    RecordKind,
    UsageRecord,
    record_from_payload,
    same_usage,
    scoped_key,
    unreadable_record,
)

BUSY_TIMEOUT_S = 10.0  # several processes enqueue at once; each write is milliseconds


def _next_seq(db: sqlite3.Connection) -> int:
    """The sequence number of this write transaction's changes (writes are serialised)."""
    ((seq,),) = db.execute("UPDATE usage_seq SET n = n + 1 RETURNING n").fetchall()
    return int(seq)


def _inserted(
    db: sqlite3.Connection,
    records: Sequence[UsageRecord],
    now: float,
    counted_events: frozenset[str],
) -> int:
    """Insert new records in their order (a known key is skipped).

    Records that can count as local usage name their customer (indexed) and carry this
    transaction's sequence number, which :meth:`SqliteOutbox.changes` follows; other
    events name neither (``_INSERT_OTHER``), and a transaction of only those takes no
    sequence number. One comprehension a run: a bulk report writes thousands (so the
    scoped key is written out, not :func:`scoped_key`, and a kind's value is read as
    ``_value_``: ``.value`` runs Python code).
    """
    inserted = seq = 0
    for counts, run in groupby(records, key=lambda r: r.counts_locally(counted_events)):
        if not counts:
            inserted += db.executemany(
                _INSERT_OTHER,
                [
                    (r.customer_id + "\n" + r.idempotency_key, r.stamped_at, r.payload, now)
                    for r in run
                ],
            ).rowcount
            continue
        seq = seq or _next_seq(db)
        inserted += db.executemany(
            _INSERT_COUNTED,
            [
                (r.kind._value_, r.customer_id + "\n" + r.idempotency_key, r.stamped_at,
                 r.payload, now, r.customer_id, seq)
                for r in run
            ],
        ).rowcount  # fmt: skip
    _moved(db, pending=inserted)
    return inserted


def _moved(db: sqlite3.Connection, *, pending: int = 0, sent: int = 0, dead: int = 0) -> None:
    """Keep ``outbox_counts`` with the rows (in the same write transaction).

    Rows written by anything else (a planted row) are not counted; the counts
    never go below zero, and an idle claim puts the pending count right.
    """
    for state, delta in (("pending", pending), ("sent", sent), ("dead", dead)):
        if delta:
            db.execute("UPDATE outbox_counts SET n = max(0, n + ?) WHERE state = ?", (delta, state))


def _record(row: Sequence[Any]) -> UsageRecord:
    """Raises ValueError: the row does not hold a record this library wrote."""
    kind, _key, stamped, payload = row
    try:
        return record_from_payload(RecordKind(kind), payload, float(stamped))
    except (ValueError, TypeError) as error:  # a bad kind or stamp too
        raise ValueError(f"not a stored record: {error}") from None


def _readable(row: Sequence[Any]) -> UsageRecord | None:
    """The record, or ``None`` for a row that does not decode (claims dead-letter those)."""
    try:
        return _record(row)
    except ValueError:
        return None


def _shown(row: Sequence[Any]) -> UsageRecord:
    """The record, or a stand-in showing what was found (a dead letter is listed either way)."""
    return _readable(row) or unreadable_record(*row)


class _SeenBefore(Exception):  # noqa: N818 - a signal, not an error
    """Some keys of a batch were already enqueued (the rare path)."""


def _all_inserted(inserted: int, expected: int) -> None:
    if inserted != expected:
        raise _SeenBefore  # rolls the attempt back


_INSERT_COUNTED = (
    f"INSERT INTO outbox ({COLUMNS}, enqueued_at, customer, seq) VALUES (?,?,?,?,?,?,?) "
    "ON CONFLICT(kind, idem_key) DO NOTHING"
)
# An event no meter counts (usage always counts) leaves ``customer`` and ``seq`` to their
# defaults (NULL, 0): Python's sqlite3 binds a ``None`` through its adapter look-up, which
# cost a 1,000-row insert a seventh of its time.
_INSERT_OTHER = (
    f"INSERT INTO outbox ({COLUMNS}, enqueued_at) VALUES ('event',?,?,?,?) "
    "ON CONFLICT(kind, idem_key) DO NOTHING"
)
# Changes after a sequence number, as one statement (one consistent read): rows still in
# the outbox (pending or sent, with their ack time) that can count as local usage (only
# those are indexed by sequence number: other events cost no index write), then those
# moved to the dead letters.
_CHANGES = (
    f"SELECT seq, {COLUMNS}, acked_at, counted, 0 FROM outbox "
    "WHERE seq > ? AND customer IS NOT NULL "
    f"UNION ALL SELECT seq, {COLUMNS}, NULL, NULL, 1 FROM dead_letters WHERE seq > ? ORDER BY 1"
)


def _bury(
    db: sqlite3.Connection, ids: Sequence[int], reason: str, now: float, seq: int | None = None
) -> None:
    """Move pending records to the dead letters (``seq``: this transaction's, if it has one).

    A dead letter takes a number of its own: nothing it holds can make the move fail.
    """
    seq = _next_seq(db) if seq is None else seq
    buried = db.execute(
        f"INSERT INTO dead_letters ({COLUMNS}, reason, dead_at, attempts, seq) "
        f"SELECT {COLUMNS}, ?, ?, attempts + 1, ? FROM outbox "
        f"WHERE state = 'pending' AND id IN ({_marks(ids)})",
        (reason, now, seq, *ids),
    ).rowcount
    db.execute(f"DELETE FROM outbox WHERE state = 'pending' AND id IN ({_marks(ids)})", ids)
    _moved(db, pending=-buried, dead=buried)


# Depth and dead letters from the counts; leased rows from their own index; the oldest
# pending record's stamp as ``_sqlite_claims`` finds it.
_STATS = (
    "SELECT (SELECT json_group_array(json_array(state, n)) FROM outbox_counts), "
    "(SELECT count(*) FROM outbox INDEXED BY idx_outbox_leased WHERE lease_owner IS NOT NULL "
    f"AND lease_until > ? AND leased_at <= ?), ({OLDEST})"
)


# Pending rows of neither kind (each term an index range: no scan of the pending rows).
_FOREIGN_KINDS = (
    " UNION ALL ".join(
        f"SELECT id FROM outbox WHERE state = 'pending' AND {kinds}"
        for kinds in ("kind < 'event'", "kind > 'event' AND kind < 'usage'", "kind > 'usage'")
    )
    + " LIMIT 100"
)


def _reused(record: UsageRecord) -> ValueError:
    return ValueError(
        f"idempotency_key {record.idempotency_key!r} was already used for "
        "different usage: Stigg would silently drop this one; use a new key"
    )


def _identity(record: UsageRecord) -> tuple[str, str]:
    """A record's row identity: its kind and its key scoped to its customer."""
    return record.kind.value, scoped_key(record.customer_id, record.idempotency_key)


def _marks(ids: Sequence[object]) -> str:
    return ",".join("?" * len(ids))


def _changes(rows: Sequence[Sequence[Any]], after: int) -> UsageChanges:
    held: list[Held] = []
    dead: list[tuple[str, str]] = []
    for row in rows:
        record = _readable(row[1:5])
        if record is None:
            continue  # never counted: nothing to add or take back
        if row[7]:
            dead.append((record.customer_id, record.idempotency_key))
        else:
            held.append(Held(record, row[5], row[6]))
    return UsageChanges(max((int(row[0]) for row in rows), default=after), held, dead)


def outbox_beside(store: Path) -> Path:
    """Where a client keeps its outbox by default, beside its file store (``x.db``:
    ``x-outbox.db``)."""
    return store.with_name(f"{store.stem}-outbox.db")


class SqliteOutbox:
    """Outbox, dead letters and sent history in one SQLite database."""

    def __init__(self, path: Path | str | None, *, read_only: bool = False) -> None:
        """Open (creating) the outbox at ``path``; ``None`` keeps it in memory (not durable).

        An in-memory outbox starts empty in a forked child: the records it
        inherited are the parent's to send, and sending them here too would
        count them twice.

        Args:
            read_only: open an existing outbox for reading only (tools that look):
                nothing is created, migrated or written.

        Raises:
            StoreNotFoundError: read-only, and there is no file at ``path``.
            ConfigurationError: read-only, and the file is not an outbox of this version.
            StoreError: the file cannot be opened.
        """
        self.path = None if path is None else Path(path)
        if self.path is not None and read_only and not self.path.exists():
            raise not_found(self.path, "sqlite", "outbox")
        if self.path is not None and not read_only:
            try:
                private_file(self.path)
            except OSError as error:
                raise StoreError(f"cannot open outbox {self.path}: {error}") from error
        # Event names a meter maps to a feature (set by the client from its policy): only
        # their records (and usage records) are indexed by customer for local usage.
        self.counted_events: frozenset[str] = frozenset()
        self._db = SqliteConnection(
            self.path,
            name="outbox",
            busy_timeout_s=BUSY_TIMEOUT_S,
            synchronous="FULL",
            create=self._is_an_outbox if read_only else create,
            read_only=read_only,
        )

    def _is_an_outbox(self, db: sqlite_utils.Database) -> None:
        """Read-only: the file is an outbox this version reads as it is (never migrated)."""
        assert self.path is not None
        hint = f"a client whose store is {self.path} keeps its usage in {outbox_beside(self.path)}"
        expect_table(db, "outbox", self.path, "an outbox", hint)
        version = version_reached(db)
        if version != SCHEMA_VERSION:
            raise ConfigurationError(
                f"{self.path} is an outbox of schema {version}; this stigg-cache reads schema "
                f"{SCHEMA_VERSION}: a client of this version upgrades it when it opens it"
            )

    def enqueue(self, records: Sequence[UsageRecord], now: float) -> list[Receipt]:
        if not self._insert_if_all_new(records, now):
            return self._enqueue_with_duplicates(records, now)
        return [Receipt(r.idempotency_key, r.kind, r.customer_id) for r in records]

    def _insert_if_all_new(self, records: Sequence[UsageRecord], now: float) -> bool:
        """Insert every record in one statement, or nothing if any key was seen before."""
        try:
            with self._db.write() as db:
                _all_inserted(_inserted(db, records, now, self.counted_events), len(records))
        except _SeenBefore:
            return False
        return True

    def _enqueue_with_duplicates(self, records: Sequence[UsageRecord], now: float) -> list[Receipt]:
        """Some keys were seen before: tell duplicates apart, refuse reused keys."""
        receipts: list[Receipt] = []
        fresh: list[UsageRecord] = []
        with self._db.write() as db:
            known = self._payloads_of(db, records)
            for record in records:
                identity = _identity(record)
                prior = known.get(identity)
                if prior is not None and not same_usage(prior, record):
                    raise _reused(record)
                if prior is None:
                    known[identity] = record.payload
                    fresh.append(record)
                receipts.append(
                    Receipt(
                        record.idempotency_key, record.kind, record.customer_id, prior is not None
                    )
                )
            _inserted(db, fresh, now, self.counted_events)
        return receipts

    @staticmethod
    def _payloads_of(
        db: sqlite3.Connection, records: Sequence[UsageRecord]
    ) -> dict[tuple[str, str], str]:
        """Payloads already enqueued under the records' keys (one query per 500 keys)."""
        found: dict[tuple[str, str], str] = {}
        identities = [_identity(r) for r in records]
        for kind in {kind for kind, _ in identities}:
            keys = [key for k, key in identities if k == kind]
            for start in range(0, len(keys), 500):
                chunk = keys[start : start + 500]
                rows = db.execute(
                    "SELECT idem_key, payload FROM outbox "
                    f"WHERE kind = ? AND idem_key IN ({_marks(chunk)})",
                    (kind, *chunk),
                )
                found.update(((kind, key), payload) for key, payload in rows)
        return found

    def claim(
        self, kind: RecordKind, limit: int, owner: str, *, now: float, lease_s: float
    ) -> list[Claimed]:
        with self._db.write() as db:
            rows = claimable(db, kind.value, limit, now)
            claimed = self._decoded(db, rows, now)
            if not rows:
                db.execute(RECOUNT_IF_EMPTY)
            ids = [c.id for c in claimed]
            if ids:
                db.execute(
                    "UPDATE outbox SET lease_owner = ?, leased_at = ?, lease_until = ? "
                    f"WHERE id IN ({_marks(ids)})",
                    (owner, now, now + lease_s, *ids),
                )
        return claimed

    @staticmethod
    def _decoded(db: sqlite3.Connection, rows: Sequence[Any], now: float) -> list[Claimed]:
        """The rows as records; a row that does not decode (written by something else, or
        damaged) goes to the dead letters with the reason: one bad row never stops the rest."""
        claimed: list[Claimed] = []
        for row in rows:
            try:
                claimed.append(Claimed(row[0], _record(row[1:-1]), row[-1]))
            except ValueError as error:
                _bury(db, [row[0]], f"unreadable in the outbox: {error}", now)
        foreign = db.execute(_FOREIGN_KINDS).fetchall()  # never claimed as either kind
        for (id_,) in foreign:
            _bury(db, [id_], "unreadable in the outbox: not an event or usage record", now)
        return claimed

    def settle(
        self,
        *,
        sent: Sequence[int] = (),
        retry: Sequence[int] = (),
        dead: Sequence[int] = (),
        owner: str,
        now: float,
        retry_at: float = 0.0,
        reason: str = "",
        counted: Mapping[int, float] | None = None,
    ) -> None:
        with self._db.write() as db:
            seq = _next_seq(db) if sent or dead else 0
            if sent:  # delivered, whoever holds the lease now: never send it again
                acked = db.execute(
                    "UPDATE outbox SET state = 'sent', acked_at = ?, lease_owner = NULL, "
                    f"lease_until = 0, seq = ? WHERE state = 'pending' AND id IN ({_marks(sent)})",
                    (now, seq, *sent),
                ).rowcount
                _moved(db, pending=-acked, sent=acked)
                if counted:
                    db.executemany(
                        "UPDATE outbox SET counted = ? WHERE id = ?",
                        [(value, id_) for id_, value in counted.items()],
                    )
            if retry:
                db.execute(
                    "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?, "
                    "retry_set_at = ?, last_error = ?, lease_owner = NULL, lease_until = 0 "
                    f"WHERE lease_owner = ? AND id IN ({_marks(retry)})",
                    (retry_at, now, reason, owner, *retry),
                )
            if dead:
                _bury(db, dead, reason, now, seq)
            kept_long_enough = db.execute(
                "DELETE FROM outbox INDEXED BY idx_outbox_sent "
                "WHERE state = 'sent' AND acked_at < ?",
                (now - KEEP_SENT_S,),
            ).rowcount
            _moved(db, sent=-kept_long_enough)

    def forget(self, ids: Sequence[int]) -> int:
        """Delete records outright, whatever their state (moved to another outbox)."""
        if not ids:
            return 0
        with self._db.write() as db:
            states = [
                state
                for (state,) in db.execute(
                    f"DELETE FROM outbox WHERE id IN ({_marks(ids)}) RETURNING state", ids
                ).fetchall()
            ]
            _moved(db, pending=-states.count("pending"), sent=-states.count("sent"))
        return len(states)

    def release(self, owner: str) -> int:
        with self._db.write() as db:
            return db.execute(
                "UPDATE outbox INDEXED BY idx_outbox_leased "
                "SET lease_owner = NULL, lease_until = 0 "
                "WHERE lease_owner = ? AND state = 'pending'",
                (owner,),
            ).rowcount

    def stats(self, now: float) -> OutboxStats:
        """Counts kept with the rows, and index lookups: the same cost at any depth."""
        ((counts, leased, oldest),) = self._db.run(_STATS, (now, now))
        found = dict(json.loads(counts or "[]"))
        return OutboxStats(
            found.get("pending", 0), leased, found.get("sent", 0), found.get("dead", 0), oldest
        )

    def changes(self, after: int) -> UsageChanges:
        """What moved local usage since sequence number ``after`` (``-1``: everything held)."""
        return _changes(self._db.read(_CHANGES, (after, after)), after)

    def cursor(self) -> int:
        """The sequence number of the latest change."""
        ((seq,),) = self._db.read("SELECT n FROM usage_seq")
        return int(seq)

    def held_of(self, customer_id: str, resource_id: str | None) -> list[Held]:
        """The records of one customer (and resource) still held: pending, and sent for as
        long as they are kept, with their acknowledgement (an index lookup)."""
        rows = self._db.read(
            f"SELECT {COLUMNS}, acked_at, counted FROM outbox WHERE customer = ? ORDER BY id",
            (customer_id,),
        )
        return [
            Held(record, row[4], row[5])
            for row in rows
            if (record := _readable(row[:4])) is not None and record.resource_id == resource_id
        ]

    def enqueue_if(
        self,
        records: Sequence[UsageRecord],
        now: float,
        *,
        after: int,
        admit: Callable[[UsageChanges], bool],
    ) -> list[Receipt] | None:
        """Enqueue only if ``admit`` says so, given every change after ``after``, all in one
        write transaction: no process can add usage between the look and the enqueue."""
        with self._db.write() as db:
            known = self._payloads_of(db, records)
            if known:  # a retry: the same records were enqueued before (or a reused key)
                return self._duplicates(records, known)
            if not admit(_changes(db.execute(_CHANGES, (after, after)).fetchall(), after)):
                return None
            _inserted(db, records, now, self.counted_events)
        return [Receipt(r.idempotency_key, r.kind, r.customer_id) for r in records]

    @staticmethod
    def _duplicates(
        records: Sequence[UsageRecord], known: dict[tuple[str, str], str]
    ) -> list[Receipt]:
        """Receipts of records enqueued before (all of them, the same usage)."""
        for record in records:
            prior = known.get(_identity(record))
            if prior is None or not same_usage(prior, record):
                raise _reused(record)
        return [Receipt(r.idempotency_key, r.kind, r.customer_id, duplicate=True) for r in records]

    def unsettled(self) -> list[tuple[UsageRecord, float | None]]:
        rows = self._db.run(f"SELECT {COLUMNS}, acked_at FROM outbox ORDER BY id")
        return [(record, row[-1]) for row in rows if (record := _readable(row[:-1])) is not None]

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        rows = self._db.run(
            f"SELECT id, {COLUMNS}, reason, dead_at, attempts FROM dead_letters "
            "ORDER BY id LIMIT ?",
            (limit,),
        )
        return [DeadLetter(r[0], _shown(r[1:5]), r[5], r[6], r[7]) for r in rows]

    def requeue(self, ids: Sequence[int] | None = None) -> int:
        """Move dead letters back to the outbox. One whose key was enqueued again meanwhile
        is dropped if that record is the same usage (it is in the outbox already), and kept
        if it is other usage under the key (moving it back would lose one of the two)."""
        where, params = self._selection(ids)
        held_again = (
            "EXISTS (SELECT 1 FROM outbox o WHERE o.kind = dead_letters.kind "
            "AND o.idem_key = dead_letters.idem_key AND o.payload = dead_letters.payload)"
        )
        with self._db.write() as db:
            moved = db.execute(
                f"INSERT OR IGNORE INTO outbox ({COLUMNS}, enqueued_at, seq, customer) "
                f"SELECT {COLUMNS}, dead_at, ?, {CUSTOMER_OF_PAYLOAD} "
                f"FROM dead_letters {where} ORDER BY id",
                (_next_seq(db), *params),
            ).rowcount
            also = "AND" if where else "WHERE"
            dropped = db.execute(
                f"DELETE FROM dead_letters {where} {also} {held_again}", params
            ).rowcount
            _moved(db, pending=moved, dead=-dropped)
        return moved

    def purge(self, ids: Sequence[int] | None = None) -> int:
        where, params = self._selection(ids)
        with self._db.write() as db:
            purged = db.execute(f"DELETE FROM dead_letters {where}", params).rowcount
            _moved(db, dead=-purged)
        return purged

    @staticmethod
    def _selection(ids: Sequence[int] | None) -> tuple[str, tuple[int, ...]]:
        if ids is None:
            return "", ()
        return f"WHERE id IN ({_marks(ids) or 'NULL'})", tuple(ids)

    def journal_add(
        self, rows: Sequence[JournalRow], uncovered: int, *, size: int, chars: int
    ) -> None:
        """The host's offline decisions counted in (``SharedJournal``)."""
        with self._db.write() as db:
            _journal.journal_add(db, rows, uncovered, size=size, chars=chars)

    def journal_take(self) -> tuple[list[JournalRow], int]:
        """Every offline decision of the host, taken (``SharedJournal``)."""
        with self._db.write() as db:
            return _journal.journal_take(db)

    def close(self) -> None:
        self._db.close()

    def __repr__(self) -> str:
        return f"SqliteOutbox({str(self.path) if self.path else ':memory:'!r})"


def open_sqlite_outbox(url: str, *, read_only: bool = False) -> SqliteOutbox:
    """``sqlite:////absolute/path.db`` (durable) or ``memory://`` (tests, demos: not durable)."""
    if url == "memory://":
        return SqliteOutbox(None)
    return SqliteOutbox(path_from_url(url, "sqlite"), read_only=read_only)
