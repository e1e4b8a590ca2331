"""The default durable store: one SQLite file in WAL mode.

Safe for several threads (one connection behind a lock) and several processes
(WAL, ``busy_timeout``, single-statement upserts, a connection per process:
:mod:`stigg_cache._support.sqlite`).
"""

from __future__ import annotations

import collections
import functools
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import sqlite_utils

from stigg_cache._support import fork
from stigg_cache._support.files import private_file
from stigg_cache._support.sqlite import SqliteConnection, expect_table
from stigg_cache._support.url import not_found, path_from_url
from stigg_cache.errors import StoreError
from stigg_cache.stores.base import FENCE_KEEP_S, MISSING, Missing, next_generation

BUSY_TIMEOUT_S = 2.0  # another process's write holds the lock for milliseconds, not seconds
# A refresh lease waits this long for another process's lock: it delays the fetch a check
# may be waiting for, so far less than a check's budget (past it, this process fetches).
LEASE_WAIT_S = 0.1
TABLE = "stigg_cache_entries"


LEASES = "stigg_cache_leases"
# Who holds a lease until when: a read, that never waits for the write lock.
_HOLDER = f"SELECT owner, until FROM {LEASES} WHERE key = ?"  # noqa: S608
# Taken when free, expired or already ours; RETURNING says whether it is ours now.
_LEASE = (
    f"INSERT INTO {LEASES} (key, owner, until) VALUES (?, ?, ?) "  # noqa: S608
    "ON CONFLICT(key) DO UPDATE SET owner = excluded.owner, until = excluded.until "
    f"WHERE {LEASES}.until <= ? OR {LEASES}.owner = excluded.owner RETURNING owner"
)


FENCES = "stigg_cache_fences"  # a key's generation (Fencing) and when it was last fenced
_PUT = (
    f"INSERT INTO {TABLE} (key, value, updated_at, used_at) VALUES (?, ?, ?, ?) "  # noqa: S608
    "ON CONFLICT(key) DO UPDATE SET "
    "value = excluded.value, updated_at = excluded.updated_at, used_at = excluded.used_at"
)
_GENERATION = f"SELECT generation FROM {FENCES} WHERE key = ?"  # noqa: S608
PUT_BATCH = 100  # fenced puts written in one statement at most (3 parameters each)


@functools.cache
def _fenced_puts(count: int) -> str:
    """``count`` puts, each unless its key's generation moved: the looks and the writes in
    one statement, so the write lock is taken once, for one step (not across the GIL waits
    of a transaction's several). RETURNING names the keys written."""
    queued = ", ".join(["(?, ?, ?)"] * count)
    return (
        f"WITH queued(key, value, generation) AS (VALUES {queued}) "  # noqa: S608
        f"INSERT INTO {TABLE} (key, value, updated_at, used_at) "
        "SELECT queued.key, queued.value, ?, ? FROM queued WHERE coalesce("
        f"(SELECT generation FROM {FENCES} WHERE {FENCES}.key = queued.key), 0) "
        "= queued.generation ON CONFLICT(key) DO UPDATE SET value = excluded.value, "
        "updated_at = excluded.updated_at, used_at = excluded.used_at RETURNING key"
    )


class _Put:
    """A fenced put waiting for the statement that writes it with those queued beside it."""

    __slots__ = ("error", "generation", "key", "value", "written")

    def __init__(self, key: str, value: bytes, generation: int) -> None:
        self.key = key
        self.value = value
        self.generation = generation
        self.written: bool | None = None  # None: not written yet
        self.error: StoreError | None = None


_FENCE = (
    f"INSERT INTO {FENCES} (key, generation, fenced_at) VALUES (?, ?, ?) "  # noqa: S608
    "ON CONFLICT(key) DO UPDATE SET generation = max(excluded.generation, generation + 1), "
    "fenced_at = excluded.fenced_at"
)
_OLD_FENCES = (
    f"DELETE FROM {FENCES} WHERE key IN "  # noqa: S608
    f"(SELECT key FROM {FENCES} WHERE fenced_at < ? LIMIT ?)"
)


def _create(db: sqlite_utils.Database) -> None:
    table = db[TABLE]
    table.create(  # type: ignore[union-attr]
        {"key": str, "value": bytes, "updated_at": float, "used_at": float},
        pk="key",
        if_not_exists=True,
    )
    if "used_at" not in table.columns_dict:  # a file written before reads were noted
        table.add_column("used_at", float)  # type: ignore[union-attr]
        db.execute(f"UPDATE {TABLE} SET used_at = updated_at")  # noqa: S608
    # Pruning reads the oldest (written, used) first: indexes, so a pass costs what it deletes.
    table.create_index(["updated_at"], if_not_exists=True)  # type: ignore[union-attr]
    table.create_index(["used_at"], if_not_exists=True)  # type: ignore[union-attr]
    db[LEASES].create(  # type: ignore[union-attr]
        {"key": str, "owner": str, "until": float}, pk="key", if_not_exists=True
    )
    db[FENCES].create(  # type: ignore[union-attr]
        {"key": str, "generation": int, "fenced_at": float}, pk="key", if_not_exists=True
    )


# The mean size of the least recently used entries: how many to delete to get back under
# a byte bound.
_UNUSED_SIZE = (
    f"SELECT avg(length(value)) FROM (SELECT value FROM {TABLE} "  # noqa: S608
    "WHERE substr(key, 1, ?) = ? ORDER BY used_at LIMIT 100)"
)
_PAST_TIME = (
    f"DELETE FROM {TABLE} WHERE key IN (SELECT key FROM {TABLE} "  # noqa: S608
    "WHERE substr(key, 1, ?) = ? AND updated_at < ? ORDER BY updated_at LIMIT ?)"
)
_LEAST_USED = (
    f"DELETE FROM {TABLE} WHERE key IN (SELECT key FROM {TABLE} "  # noqa: S608
    "WHERE substr(key, 1, ?) = ? ORDER BY used_at LIMIT ?)"
)
ROW_OVERHEAD_BYTES = 100  # key, time, b-tree cells and the index entry of a row
# Refresh leases are bookkeeping, not snapshots: expired ones are swept with the snapshots,
# and the live ones' bytes are left out of the byte bound (or a burst of refreshes would
# push snapshots out). A lease is stored twice (its row, its key's index entry) with a
# few bytes of cell each, in pages at least half full: counted twice over, never under.
_EXPIRED_LEASES = (
    f"DELETE FROM {LEASES} WHERE key IN "  # noqa: S608
    f"(SELECT key FROM {LEASES} WHERE until <= ? LIMIT ?)"
)
# Fences are bookkeeping too (a key and two numbers a row), left out the same way.
_BOOKKEEPING_BYTES = (
    f"SELECT (SELECT total(2 * (2 * length(key) + length(owner) + 24)) FROM {LEASES}) "  # noqa: S608
    f"+ (SELECT total(2 * (2 * length(key) + 40)) FROM {FENCES})"
)


def _snapshot_bytes(db: sqlite3.Connection) -> int:
    """Bytes of the database's pages in use but for the leases' and fences' (free pages are reused
    before the file grows)."""
    ((pages,),) = db.execute("PRAGMA page_count").fetchall()
    ((free,),) = db.execute("PRAGMA freelist_count").fetchall()
    ((size,),) = db.execute("PRAGMA page_size").fetchall()
    ((bookkeeping,),) = db.execute(_BOOKKEEPING_BYTES).fetchall()
    return int((pages - free) * size - bookkeeping)


class SqliteStore:
    """Entries in one table of a SQLite database."""

    def __init__(self, path: Path | str, *, read_only: bool = False) -> None:
        """Open (creating) the store at ``path``.

        Args:
            read_only: open an existing store for reading only (tools that look):
                nothing is created, written or set up.

        Raises:
            StoreNotFoundError: read-only, and there is no file at ``path``.
            ConfigurationError: read-only, and the file is not a snapshot store.
            StoreError: the file cannot be opened.
        """
        self.path = Path(path)
        if read_only and not self.path.exists():
            raise not_found(self.path, "sqlite", "SQLite store")
        if not read_only:
            try:
                private_file(self.path)
            except OSError as error:
                raise StoreError(f"cannot open SQLite store {self.path}: {error}") from error
        self._kept: tuple[str, float, int | None] | None = None  # prefix, seconds, max bytes
        self._puts: collections.deque[_Put] = collections.deque()  # fenced puts to write
        self._putting = threading.Lock()  # the turn to write them
        fork.renew_after_fork(self, SqliteStore._renew)
        self._db = SqliteConnection(
            self.path,
            name="SQLite store",
            busy_timeout_s=BUSY_TIMEOUT_S,
            synchronous="NORMAL",
            create=self._is_a_store if read_only else _create,
            read_only=read_only,
        )

    def _renew(self) -> None:
        """In a forked child: the parent's queued puts are the parent's threads' to write."""
        self._puts = collections.deque()
        self._putting = threading.Lock()

    def _is_a_store(self, db: sqlite_utils.Database) -> None:
        expect_table(db, TABLE, self.path, "a snapshot store", "stigg-cache outbox reads outboxes")

    def get(self, key: str) -> bytes | Missing:
        rows = self._db.read(f"SELECT value FROM {TABLE} WHERE key = ?", (key,))  # noqa: S608
        if not rows:
            return MISSING
        value = rows[0][0]
        return bytes(value) if isinstance(value, bytes | memoryview) else str(value).encode()

    def put(self, key: str, value: bytes) -> None:
        now = time.time()
        self._db.run(_PUT, (key, sqlite3.Binary(value), now, now))

    def generation(self, key: str) -> int:
        rows = self._db.read(_GENERATION, (key,))
        return int(rows[0][0]) if rows else 0

    def fence(self, key: str) -> None:
        """The value goes and the generation moves on in one transaction."""
        now = time.time()
        with self._db.write() as db:
            db.execute(_FENCE, (key, next_generation(0), now))
            db.execute(f"DELETE FROM {TABLE} WHERE key = ?", (key,))  # noqa: S608

    def put_if_generation(self, key: str, value: bytes, generation: int) -> bool:
        """The look and the write in one statement: no fence comes in between.

        Threads putting at once share statements: each queues its put, and the one
        holding the turn writes every put queued so far (a burst of refreshes takes the
        write lock, which sibling processes wait on for these very snapshots, a few times
        instead of once per snapshot).
        """
        put = _Put(key, value, generation)
        self._puts.append(put)  # deque.append and popleft are atomic
        with self._putting:
            while put.written is None and put.error is None:
                self._write_queued()
        if put.error is not None:
            raise put.error
        return bool(put.written)

    def _write_queued(self) -> None:
        """Write up to ``PUT_BATCH`` queued puts in one statement (a key once: a second put
        of it waits for the next); each put learns whether it was written, or the error."""
        batch: dict[str, _Put] = {}
        while len(batch) < PUT_BATCH and self._puts:
            put = self._puts.popleft()
            if put.key in batch:
                self._puts.appendleft(put)
                break
            batch[put.key] = put
        now = time.time()
        params = [field for put in batch.values() for field in (put.key, put.value, put.generation)]
        try:
            rows = self._db.run(_fenced_puts(len(batch)), [*params, now, now])
        except BaseException as error:  # every put taken out learns it (none waits forever)
            failed = error if isinstance(error, StoreError) else StoreError(f"not written: {error}")
            for put in batch.values():
                put.error = failed
            if failed is not error:
                raise
            return
        written = {row[0] for row in rows}
        for put in batch.values():
            put.written = put.key in written

    def lease(self, key: str, owner: str, ttl_s: float) -> bool:
        """Wall time: several processes compare expiries. A lease another owner holds
        unexpired is refused on a read: the write lock is left to the writes that need it
        (among them the holder's snapshot its siblings wait for). A store busy past
        ``LEASE_WAIT_S`` raises (the caller then waits a little for a sibling's refresh)."""
        now = time.time()
        held = self._db.read(_HOLDER, (key,))
        if held and held[0][0] != owner and held[0][1] > now:
            return False
        rows = self._db.write_briefly(_LEASE, (key, owner, now + ttl_s, now), wait_s=LEASE_WAIT_S)
        return bool(rows)

    def delete(self, key: str) -> None:
        self._db.run(f"DELETE FROM {TABLE} WHERE key = ?", (key,))  # noqa: S608

    def keys(self, prefix: str = "") -> Iterator[str]:
        rows = self._db.read(
            f"SELECT key FROM {TABLE} WHERE substr(key, 1, ?) = ?",  # noqa: S608
            (len(prefix), prefix),
        )
        return iter([str(row[0]) for row in rows])

    def keep_for(self, prefix: str, seconds: float, max_bytes: int | None) -> None:
        self._kept = (prefix, seconds, max_bytes)

    def touch(self, keys: Sequence[str]) -> None:
        """Note that these entries were read lately (a byte bound drops them last)."""
        now = time.time()
        with self._db.write() as db:
            db.executemany(
                f"UPDATE {TABLE} SET used_at = ? WHERE key = ?",  # noqa: S608
                [(now, key) for key in keys],
            )

    def prune(self, limit: int) -> int:
        """Delete entries under the kept prefix: those written more than the kept time ago,
        then (with a byte bound) the least recently used (written or read) while the file's
        used pages, but for live refresh leases, exceed it. Expired leases (and fences older
        than any fetch they fence) go first. One
        short write transaction; freed pages are reused (the file does not grow)."""
        if self._kept is None:
            return 0
        prefix, seconds, max_bytes = self._kept
        with self._db.write() as db:
            now = time.time()
            db.execute(_EXPIRED_LEASES, (now, limit))
            db.execute(_OLD_FENCES, (now - FENCE_KEEP_S, limit))
            gone = db.execute(_PAST_TIME, (len(prefix), prefix, now - seconds, limit)).rowcount
            excess = 0 if max_bytes is None else _snapshot_bytes(db) - max_bytes
            if excess > 0 and gone < limit:
                ((each,),) = db.execute(_UNUSED_SIZE, (len(prefix), prefix)).fetchall()
                over = 1 + excess // (int(each or 0) + ROW_OVERHEAD_BYTES)
                gone += db.execute(
                    _LEAST_USED, (len(prefix), prefix, min(limit - gone, over))
                ).rowcount
        return int(gone)

    def close(self) -> None:
        self._db.close()

    def __repr__(self) -> str:
        return f"SqliteStore({str(self.path)!r})"


def open_sqlite_store(url: str, *, read_only: bool = False) -> SqliteStore:
    """Entry point for ``sqlite:////absolute/path`` (``sqlite:///relative/path``)."""
    return SqliteStore(path_from_url(url, "sqlite"), read_only=read_only)
