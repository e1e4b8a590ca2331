"""Files and folders private to the user (0600 / 0700), whatever the umask."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path

from stigg_cache.errors import ConfigurationError

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600


def private_dir(path: Path) -> Path:
    """Create ``path`` and any missing parents as 0700.

    Folders that already exist are left as they are: ``sqlite:///app.db``
    puts the file in the working directory, which is not ours to lock down.
    """
    missing = [p for p in (path, *path.parents) if not p.exists()]
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=PRIVATE_DIR_MODE)
        except FileExistsError:  # another process made it meanwhile
            continue
        folder.chmod(PRIVATE_DIR_MODE)  # mkdir's mode is filtered by the umask
    return path


_SQLITE_COMPANIONS = ("-wal", "-shm", "-journal")
_FIX = (
    "choose a path in a folder only this user can write (the default, the user's cache "
    "folder, is one), or remove what another user put there"
)


def _ours(path: Path) -> None:
    """An existing file this process may use: ours, not a link; made private if it was not.

    Raises:
        OSError: a symbolic link (never followed).
        ConfigurationError: another user's file (it could read and write our data).
    """
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode):
        raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), str(path))
    if info.st_uid != os.getuid():
        raise ConfigurationError(
            f"{path} belongs to another user (uid {info.st_uid}), who could read and change "
            f"it: {_FIX}"
        )
    if stat.S_IMODE(info.st_mode) & 0o077:
        path.chmod(PRIVATE_FILE_MODE)  # ours, checked above: not a link


def swappable_by_others(folder: Path) -> str | None:
    """Why another user could replace the files in ``folder``, or ``None``: it is owned by
    another user than this one or root, or others may write it without the sticky bit
    (``/tmp`` has it: there no one can rename or delete another's file)."""
    info = folder.stat()
    mode = stat.S_IMODE(info.st_mode)
    if info.st_uid not in (os.getuid(), 0):
        return f"{folder} belongs to another user (uid {info.st_uid})"
    if mode & 0o022 and not mode & stat.S_ISVTX:
        return f"{folder} can be written by other users ({mode:o})"
    return None


def _safe_folder(folder: Path) -> None:
    """A folder where no other user can swap our files.

    Raises:
        ConfigurationError: see :func:`swappable_by_others`.
    """
    reason = swappable_by_others(folder)
    if reason is not None:
        raise ConfigurationError(f"{reason}, who could replace the files in it: {_FIX}")


def private_file(path: Path) -> Path:
    """Create ``path`` empty as 0600 if absent (SQLite then makes -wal/-shm alike).

    An existing file is never opened here: closing any descriptor of a
    database file drops every POSIX lock this process holds on it, including
    those of SQLite connections already open (SQLite's "how to corrupt" list,
    item 2.2). A second store on the same file in one process, with another
    process writing, turned that into "disk I/O error" (found by a chaos run).

    Raises:
        OSError: ``path`` is a symbolic link (never followed), or cannot be made.
        ConfigurationError: ``path``, a SQLite file beside it, or its folder belongs to
            another user, or the folder can be written by others (no sticky bit).
    """
    private_dir(path.parent)
    _safe_folder(path.parent)
    for companion in (path.with_name(path.name + end) for end in _SQLITE_COMPANIONS):
        with contextlib.suppress(FileNotFoundError):  # SQLite makes and removes its own
            _ours(companion)  # SQLite would use a planted -wal as it is
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR | os.O_NOFOLLOW, PRIVATE_FILE_MODE)
    except FileExistsError:
        _ours(path)
        return path
    try:
        os.fchmod(fd, PRIVATE_FILE_MODE)  # the mode given to open() is filtered by the umask
    finally:
        os.close(fd)
    return path
