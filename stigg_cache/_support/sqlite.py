"""One SQLite file as this process uses it: WAL, a busy timeout, a lock, a schema set up once.

Shared by the store and the outbox. The rules, from running several workers
on one host:

* **Race-free first open.** Workers booted together open the same fresh file
  at once. SQLite answers some of those races with ``SQLITE_BUSY`` at once,
  without waiting for the busy timeout: the switch to WAL (it needs the file
  to itself) and a read that must become a write while another connection
  writes. The setup (WAL, then the schema in one ``BEGIN IMMEDIATE``
  transaction) is retried until the busy timeout has passed.
* **A connection per process.** SQLite's locks belong to a process and are
  not inherited: after ``os.fork`` the child opens its own connection on first
  use and never touches (or closes) the parent's.
* **No thread of ours inside SQLite at a fork.** SQLite guards its allocator
  and its table of open files with process-wide mutexes; a thread inside
  SQLite when another thread forks leaves them locked for ever in the child,
  whose first ``sqlite3.connect`` then hangs. Every call of ours holds
  :data:`FORK_GATE` shared; a fork takes it whole (waiting for the calls under
  way, holding back new ones).
* **Reads never queue behind a write.** Writes share one connection under a
  lock (a write waits up to the busy timeout for another process's); reads
  take a connection of a pool (one per thread reading at once), which WAL
  never blocks, and wait at most ``READ_BUSY_TIMEOUT_S`` in the rare moments
  it would (a recovery): a check's budget is not the store's to spend.
* **Errors translated once**: any ``sqlite3.Error`` leaves as a :class:`StoreError`.
"""

from __future__ import annotations

import os
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import sqlite_utils

from stigg_cache._support import fork
from stigg_cache.errors import ConfigurationError, StoreError

_T = TypeVar("_T")
_BUSY_CODES = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})
SETUP_RETRY_S = 0.02  # first opens race for milliseconds: retry soon, jittered
READ_BUSY_TIMEOUT_S = 0.05  # a read WAL cannot serve at once is a miss, not a stall
FORK_POLL_S = 0.0005  # a fork waits for the SQLite calls under way in steps this long


class ForkGate:
    """Held shared by every SQLite call of ours; taken whole by ``os.fork`` (see above).

    Used as ``with FORK_GATE:``. A call takes no lock unless a fork is under way:
    it notes itself in ``_inside`` and then looks at ``_forking`` (the fork sets
    ``_forking`` and then waits for ``_inside`` to empty; under the GIL one of the
    two always sees the other). A lock taken by every call made threads reading
    at once queue on it.
    """

    def __init__(self) -> None:
        self._inside: list[None] = []
        self._forking = False
        self._reopened = threading.Event()
        self._renew()
        os.register_at_fork(
            before=self._close, after_in_parent=self._open, after_in_child=self._renew
        )

    def __enter__(self) -> None:
        inside = self._inside
        inside.append(None)  # list.append and list.pop are atomic
        while self._forking:  # rare: step out, wait for the fork, come back in
            inside.pop()
            self._reopened.wait()
            inside.append(None)

    def __exit__(self, *_: object) -> None:
        self._inside.pop()

    def _close(self) -> None:
        self._reopened.clear()
        self._forking = True
        while self._inside:
            time.sleep(FORK_POLL_S)

    def _open(self) -> None:
        self._forking = False
        self._reopened.set()

    def _renew(self) -> None:
        self._inside = []
        self._forking = False
        self._reopened = threading.Event()
        self._reopened.set()


FORK_GATE = ForkGate()

# What a SQLite file of ours holds, told by a table only that kind has.
KIND_BY_TABLE = {"stigg_cache_entries": "a snapshot store", "outbox": "a usage outbox"}


def expect_table(
    db: sqlite_utils.Database, table: str, path: Path | None, what: str, hint: str = ""
) -> None:
    """Check that the file holds ``table`` (the kind ``what`` names).

    Raises:
        ConfigurationError: it does not; the message says what the file holds instead,
            then ``hint``.
    """
    tables = set(db.table_names())
    if table in tables:
        return
    kinds = [kind for name, kind in KIND_BY_TABLE.items() if name in tables]
    if kinds:
        found = kinds[0]
    elif tables:
        found = f"no stigg-cache tables ({', '.join(sorted(tables)[:5])})"
    else:
        found = "nothing (an empty database)"
    raise ConfigurationError(f"{path} is not {what}: it holds {found}{hint and '; '}{hint}")


class SqliteConnection:
    """This process's connection to one SQLite file (``None``: a private in-memory database).

    Args:
        path: the file (created by the caller with the right mode) or ``None``.
        name: how errors name the file's role, e.g. ``"outbox"``.
        busy_timeout_s: how long a statement waits for another connection's lock.
        synchronous: ``FULL`` (survives power loss) or ``NORMAL``.
        create: sets up the schema; runs inside one write transaction, on every
            open of the file (so it must be idempotent). With ``read_only``, it checks
            the schema instead (raising if the file is not what the caller expects).
        read_only: open the existing file read-only: nothing is created or written
            (SQLite may add the ``-wal`` and ``-shm`` files a WAL database is read with).
    """

    def __init__(
        self,
        path: Path | None,
        *,
        name: str,
        busy_timeout_s: float,
        synchronous: str,
        create: Callable[[sqlite_utils.Database], None],
        read_only: bool = False,
    ) -> None:
        self.path = path
        self._read_only = read_only
        self._name = name
        self._busy_timeout_s = busy_timeout_s
        self._synchronous = synchronous
        self._create = create
        self._lock = threading.Lock()
        self._idle_readers: list[sqlite3.Connection] = []
        self._closed = False
        self._set_up_file = False  # WAL on and schema made, by this object (or its parent's)
        try:
            with FORK_GATE:
                self._conn: sqlite3.Connection | None = self._open()
        except sqlite3.Error as error:
            raise StoreError(f"cannot open {name} {path}: {error}") from error
        fork.renew_after_fork(self, SqliteConnection._reconnect)

    def run(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """One statement (its own transaction); every row it returns."""
        with self._translated(), self._lock, FORK_GATE:
            return self._connection().execute(sql, params).fetchall()

    def read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """One query through a reader of the pool (never waiting on this process's writes)."""
        return self._pooled(sql, params)

    def write_briefly(
        self, sql: str, params: Sequence[Any] = (), *, wait_s: float
    ) -> list[tuple[Any, ...]]:
        """One write statement through a reader of the pool, waiting up to ``wait_s`` for
        another connection's lock (never behind this process's own long writes)."""
        wait = (f"PRAGMA busy_timeout = {round(wait_s * 1000)}", ())
        restore = (f"PRAGMA busy_timeout = {round(READ_BUSY_TIMEOUT_S * 1000)}", ())
        return self._pooled(sql, params, before=wait, after=restore)

    def _pooled(
        self,
        sql: str,
        params: Sequence[Any],
        *,
        before: tuple[str, Sequence[Any]] | None = None,
        after: tuple[str, Sequence[Any]] | None = None,
    ) -> list[tuple[Any, ...]]:
        """One statement through an idle reader (or a new one), put back after."""
        if self.path is None:  # a private in-memory database has one connection
            return self.run(sql, params)
        try:  # not self._translated(): a generator's context costs a read a tenth more
            with FORK_GATE:
                if self._closed:
                    raise sqlite3.ProgrammingError("Cannot operate on a closed database.")
                return self._through_reader(sql, params, before, after)
        except sqlite3.Error as error:
            raise StoreError(f"{self._name} {self.path}: {error}") from error

    def _through_reader(
        self,
        sql: str,
        params: Sequence[Any],
        before: tuple[str, Sequence[Any]] | None,
        after: tuple[str, Sequence[Any]] | None,
    ) -> list[tuple[Any, ...]]:
        """A reader is taken out of the pool while in use; one closed meanwhile is shut."""
        try:
            reader = self._idle_readers.pop()  # list.pop and append are atomic
        except IndexError:
            reader = self._open_reader()
        try:
            if before is not None:
                reader.execute(*before)
            try:
                return reader.execute(sql, params).fetchall()
            finally:
                if after is not None:
                    reader.execute(*after)
        finally:
            self._idle_readers.append(reader)
            if self._closed:  # closed while in use here: never closed under a statement
                self._close_idle_readers()

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A ``BEGIN IMMEDIATE`` transaction: committed if the block succeeds, else rolled back."""
        with self._translated(), self._lock, FORK_GATE:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def close(self) -> None:
        """Close this process's connection (an inherited one is never closed here)."""
        with self._lock, FORK_GATE:
            self._closed = True
            if self._conn is not None:
                self._conn.close()
            self._close_idle_readers()

    def _close_idle_readers(self) -> None:
        """Close the readers no thread is using (each is taken out before it is closed)."""
        while True:
            try:
                reader = self._idle_readers.pop()
            except IndexError:
                return
            reader.close()

    @contextmanager
    def _translated(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as error:
            raise StoreError(f"{self._name} {self.path}: {error}") from error

    def _connection(self) -> sqlite3.Connection:
        """The open connection (under ``_lock`` and the gate), opened if this process has none."""
        if self._conn is None:
            self._conn = self._open()
        return self._conn

    def _open(self) -> sqlite3.Connection:
        conn = self._connect(self._busy_timeout_s)
        try:
            if self._read_only:
                self._create(sqlite_utils.Database(conn))  # checks the schema: writes nothing
                return conn
            conn.execute(f"PRAGMA synchronous={self._synchronous}")
            if self.path is not None and self._set_up_file:
                return conn  # reopened (a forked child): WAL and schema are the file's already
            db = sqlite_utils.Database(conn)
            if self.path is not None:
                self._until_free(db.enable_wal)
            self._until_free(lambda: self._set_up(db))
        except BaseException:
            conn.close()
            raise
        self._set_up_file = True
        return conn

    def _open_reader(self) -> sqlite3.Connection:
        return self._connect(READ_BUSY_TIMEOUT_S)

    def _connect(self, timeout_s: float) -> sqlite3.Connection:
        """A connection to the file (read-only: one that cannot create or write it)."""
        if self.path is not None and self._read_only:
            database, uri = f"{self.path.absolute().as_uri()}?mode=ro", True
        else:
            database, uri = str(self.path or ":memory:"), False
        return sqlite3.connect(
            database, timeout=timeout_s, check_same_thread=False, isolation_level=None, uri=uri
        )

    def _set_up(self, db: sqlite_utils.Database) -> None:
        db.execute("BEGIN IMMEDIATE")
        try:
            self._create(db)
        except BaseException:
            if db.conn.in_transaction:
                db.execute("ROLLBACK")
            raise
        if db.conn.in_transaction:
            db.execute("COMMIT")

    def _until_free(self, step: Callable[[], _T]) -> _T:
        """Run a setup step, again while another connection holds the file, up to the timeout."""
        deadline = time.monotonic() + self._busy_timeout_s
        while True:
            try:
                return step()
            except sqlite3.OperationalError as error:
                busy = error.sqlite_errorcode & 0xFF in _BUSY_CODES
                if not busy or time.monotonic() >= deadline:
                    raise
            time.sleep(SETUP_RETRY_S * (0.5 + random.random()))  # noqa: S311 - jitter, not secrets

    def _reconnect(self) -> None:
        """In a forked child: the parent's connection is abandoned; a new one opens on first use.

        An in-memory database starts empty in the child: what it held is the parent's.
        """
        fork.abandon(self._conn, self._idle_readers)
        self._lock = threading.Lock()
        self._conn = None
        self._idle_readers = []
