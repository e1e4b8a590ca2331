"""One SQLite file as this process uses it: WAL, a busy timeout, a lock, a schema set up once.

Shared by the store and the outbox. Three rules from running several workers
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
* **Errors translated once**: any ``sqlite3.Error`` leaves as a :class:`StoreError`.
"""

from __future__ import annotations

import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import sqlite_utils

from stigg_cache import _fork
from stigg_cache.errors import StoreError

_T = TypeVar("_T")
_BUSY_CODES = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})
SETUP_RETRY_S = 0.02  # first opens race for milliseconds: retry soon, jittered


class SqliteConnection:
    """This process's connection to one SQLite file (``None``: a private in-memory database).

    Args:
        path: the file (created by the caller with the right mode) or ``None``.
        name: how errors name the file's role, e.g. ``"outbox"``.
        busy_timeout_s: how long a statement waits for another connection's lock.
        synchronous: ``FULL`` (survives power loss) or ``NORMAL``.
        create: sets up the schema; runs inside one write transaction, on every
            open of the file (so it must be idempotent).
    """

    def __init__(
        self,
        path: Path | None,
        *,
        name: str,
        busy_timeout_s: float,
        synchronous: str,
        create: Callable[[sqlite_utils.Database], None],
    ) -> None:
        self.path = path
        self._name = name
        self._busy_timeout_s = busy_timeout_s
        self._synchronous = synchronous
        self._create = create
        self._lock = threading.Lock()
        try:
            self._conn: sqlite3.Connection | None = self._open()
        except sqlite3.Error as error:
            raise StoreError(f"cannot open {name} {path}: {error}") from error
        _fork.renew_after_fork(self, SqliteConnection._reconnect)

    def run(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """One statement (its own transaction); every row it returns."""
        with self._translated(), self._lock:
            return self._connection().execute(sql, params).fetchall()

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A ``BEGIN IMMEDIATE`` transaction: committed if the block succeeds, else rolled back."""
        with self._translated(), self._lock:
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
        with self._lock:
            if self._conn is not None:
                self._conn.close()

    @contextmanager
    def _translated(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as error:
            raise StoreError(f"{self._name} {self.path}: {error}") from error

    def _connection(self) -> sqlite3.Connection:
        """The open connection (under ``_lock``), opened now if this process has none."""
        if self._conn is None:
            self._conn = self._open()
        return self._conn

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            ":memory:" if self.path is None else self.path,
            timeout=self._busy_timeout_s,
            check_same_thread=False,
            isolation_level=None,
        )
        try:
            conn.execute(f"PRAGMA synchronous={self._synchronous}")
            db = sqlite_utils.Database(conn)
            if self.path is not None:
                self._until_free(db.enable_wal)
            self._until_free(lambda: self._set_up(db))
        except BaseException:
            conn.close()
            raise
        return conn

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
        _fork.abandon(self._conn)
        self._lock = threading.Lock()
        self._conn = None
