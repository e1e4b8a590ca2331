"""A store on diskcache, with pickle refused in both directions.

diskcache's default ``Disk`` unpickles any entry whose stored mode says
pickle, so whoever can write the cache directory runs code in our process
(CVE-2025-69872, unfixed in 5.6.3). :class:`RawBytesDisk` stores and fetches
bytes only; a pickled key or value is reported as a corrupt entry, never
loaded. Value files are created 0600 in 0700 folders.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import diskcache

from stigg_cache._support.files import PRIVATE_FILE_MODE, private_dir, private_file
from stigg_cache._support.sqlite import SqliteConnection, expect_table
from stigg_cache._support.url import not_found, path_from_url
from stigg_cache.errors import CorruptEntryError, StoreError
from stigg_cache.stores.base import MISSING, Missing
from stigg_cache.stores.read_only import ReadOnlyStore

DISK_TIMEOUT_S = 2.0  # SQLite busy timeout inside diskcache
# Values below this live in diskcache's SQLite rows, replaced atomically; a
# value file can vanish under a concurrent overwrite and read as a miss.
# Snapshots are kilobytes, so in practice every entry is a row.
MIN_FILE_SIZE_BYTES = 4 * 1024 * 1024
_MODE_RAW = diskcache.core.MODE_RAW
_MODE_BINARY = diskcache.core.MODE_BINARY


class _RefusedEntryError(Exception):
    """Raised inside diskcache, which swallows ``OSError`` from ``fetch`` as a miss."""


class RawBytesDisk(diskcache.Disk):  # type: ignore[misc]
    """A ``Disk`` that only ever handles ``str`` keys and ``bytes`` values."""

    def put(self, key: Any) -> tuple[Any, bool]:
        if type(key) is not str:
            raise TypeError("the disk store takes str keys only")
        return key, True

    def get(self, key: Any, raw: bool) -> Any:
        if not raw:
            raise _RefusedEntryError("refusing a pickled key planted in the disk store")
        return key

    def store(self, value: Any, read: bool, key: Any = None) -> tuple[int, int, str | None, Any]:
        del read, key
        if type(value) is not bytes:
            raise TypeError("the disk store takes bytes values only")
        if len(value) < self.min_file_size:
            return 0, _MODE_RAW, None, sqlite3.Binary(value)
        filename, full_path = self.filename()
        private_dir(Path(full_path).parent)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        fd = os.open(full_path, flags, PRIVATE_FILE_MODE)
        with os.fdopen(fd, "wb") as writer:
            writer.write(value)
        return len(value), _MODE_BINARY, filename, None

    def fetch(self, mode: int, filename: str | None, value: Any, read: bool) -> bytes:
        del read
        if mode == _MODE_RAW and isinstance(value, bytes | memoryview):
            return bytes(value)
        if mode == _MODE_BINARY and filename is not None:
            path = _confined(Path(self._directory), filename)
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
            with os.fdopen(fd, "rb") as reader:
                return reader.read()
        raise _RefusedEntryError(f"refusing a disk-store entry of mode {mode} (only raw bytes)")


def _confined(directory: Path, filename: str) -> Path:
    """``directory / filename``, refused if it would lead outside ``directory``.

    File names come from diskcache's own database, which whoever can write the
    folder can edit: ``../../home/user/.ssh/id_rsa`` must not be read.
    """
    path = directory / filename
    base = os.path.realpath(directory)
    if Path(filename).is_absolute() or not os.path.realpath(path).startswith(base + os.sep):
        raise _RefusedEntryError(
            f"refusing a disk-store entry outside the store: {filename[:80]!r}"
        )
    return path


LEASES_DIR = "leases"  # refresh leases: a cache of their own, outside the size limit


def _opened(directory: Path) -> diskcache.Cache:
    private_dir(directory)
    private_file(directory / diskcache.core.DBNAME)
    return diskcache.Cache(
        str(directory),
        timeout=DISK_TIMEOUT_S,
        disk=RawBytesDisk,
        disk_min_file_size=MIN_FILE_SIZE_BYTES,
        eviction_policy="none",
    )


class DiskStore:
    """Entries in a diskcache directory; refresh leases in a cache of their own beside them
    (diskcache counts every entry against its size limit and evicts by the time it was
    stored: leases kept with the snapshots pushed fresh snapshots out)."""

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)
        self._kept_prefix: str | None = None
        self._kept_s = 0.0
        try:
            self._cache = _opened(self.directory)
            self._leases = _opened(self.directory / LEASES_DIR)
        except (OSError, sqlite3.Error) as error:
            raise StoreError(f"cannot open disk store {self.directory}: {error}") from error

    def get(self, key: str) -> bytes | Missing:
        value = self._guard(lambda: self._cache.get(key, default=MISSING, retry=True))
        if value is MISSING or isinstance(value, bytes):
            return value
        raise CorruptEntryError("disk-store entry is not bytes")

    def put(self, key: str, value: bytes) -> None:
        expire = (
            self._kept_s
            if self._kept_prefix is not None and key.startswith(self._kept_prefix)
            else None
        )
        self._guard(lambda: self._cache.set(key, bytes(value), expire=expire, retry=True))

    def keep_for(self, prefix: str, seconds: float, max_bytes: int | None) -> None:
        """diskcache's own expiry for entries written from now on, and its own size limit
        and eviction (least recently stored first) when ``max_bytes`` is given."""
        self._kept_prefix, self._kept_s = prefix, seconds
        if max_bytes is not None:

            def limit() -> None:
                self._cache.reset("size_limit", max_bytes)
                self._cache.reset("eviction_policy", "least-recently-stored")

            self._guard(limit)

    def prune(self, limit: int) -> int:
        """diskcache drops expired entries (leases too) and culls to its size limit."""
        del limit  # diskcache's own passes are bounded

        def pruned() -> int:
            self._leases.expire(retry=True)
            return int(self._cache.expire(retry=True) + self._cache.cull(retry=True))

        return int(self._guard(pruned))

    def touch(self, keys: Sequence[str]) -> None:
        """diskcache evicts the least recently stored: noting a read would be a write per
        read (its "least-recently-used" policy), which a check's read path cannot afford."""
        del keys

    def delete(self, key: str) -> None:
        self._guard(lambda: self._cache.delete(key, retry=True))

    def lease(self, key: str, owner: str, ttl_s: float) -> bool:
        """diskcache's ``add`` takes a free or expired lease atomically; its holder renews it."""
        leases, mine = self._leases, owner.encode()

        def take() -> bool:
            if leases.add(key, mine, expire=max(ttl_s, 0.001), retry=True):
                return True
            if leases.get(key, retry=True) != mine:
                return False
            if ttl_s <= 0:
                leases.delete(key, retry=True)
            else:
                leases.set(key, mine, expire=ttl_s, retry=True)
            return True

        return bool(self._guard(take))

    def keys(self, prefix: str = "") -> Iterator[str]:
        found: list[str] = self._guard(
            lambda: [
                k for k in self._cache.iterkeys() if isinstance(k, str) and k.startswith(prefix)
            ]
        )
        return iter(found)

    def close(self) -> None:
        self._cache.close()
        self._leases.close()

    def _guard(self, action: Any) -> Any:
        try:
            return action()
        except _RefusedEntryError as error:
            raise CorruptEntryError(f"disk store {self.directory}: {error}") from None
        except (OSError, sqlite3.Error, diskcache.Timeout) as error:
            raise StoreError(f"disk store {self.directory}: {error}") from error

    def __repr__(self) -> str:
        return f"DiskStore({str(self.directory)!r})"


# diskcache's own query for a live entry (``Cache.get``); str keys are stored raw.
_LIVE_ENTRY = (
    "SELECT mode, filename, value FROM Cache "
    "WHERE key = ? AND raw = 1 AND (expire_time IS NULL OR expire_time > ?)"
)


class DiskReader:
    """A disk store's entries for tools that look (wrapped in a
    :class:`~stigg_cache.stores.read_only.ReadOnlyStore`): read through a read-only
    connection to diskcache's database, since ``diskcache.Cache`` writes its settings on
    every open."""

    def __init__(self, directory: Path | str) -> None:
        """Raises:
        StoreNotFoundError: there is no disk store in ``directory``.
        ConfigurationError: the folder's database is not a disk store's.
        """
        self.directory = Path(directory)
        database = self.directory / diskcache.core.DBNAME
        if not database.is_file():
            raise not_found(self.directory, "disk", "disk store")
        self._disk = RawBytesDisk(str(self.directory))  # its fetch: no pickle, no escape
        self._db = SqliteConnection(
            database,
            name="disk store",
            busy_timeout_s=DISK_TIMEOUT_S,
            synchronous="NORMAL",
            create=lambda db: expect_table(db, "Cache", database, "a disk store"),
            read_only=True,
        )

    def get(self, key: str) -> bytes | Missing:
        rows = self._db.read(_LIVE_ENTRY, (key, time.time()))
        if not rows:
            return MISSING
        ((mode, filename, value),) = rows
        try:
            return self._disk.fetch(mode, filename, value, read=False)
        except _RefusedEntryError as error:
            raise CorruptEntryError(f"disk store {self.directory}: {error}") from None
        except OSError:  # its value file went with an overwrite meanwhile (as diskcache)
            return MISSING

    def keys(self, prefix: str = "") -> Iterator[str]:
        rows = self._db.read(
            "SELECT key FROM Cache WHERE raw = 1 AND substr(key, 1, ?) = ?", (len(prefix), prefix)
        )
        return iter([str(key) for (key,) in rows])

    def close(self) -> None:
        self._db.close()

    def __repr__(self) -> str:
        return f"DiskReader({str(self.directory)!r})"


def open_disk_store(url: str, *, read_only: bool = False) -> DiskStore | ReadOnlyStore:
    """Entry point for ``disk:////absolute/dir`` (``disk:///relative/dir``)."""
    path = path_from_url(url, "disk")
    return ReadOnlyStore(DiskReader(path)) if read_only else DiskStore(path)
