"""Files and folders private to the user (0600 / 0700), whatever the umask."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

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


def private_file(path: Path) -> Path:
    """Create ``path`` empty as 0600 if absent (SQLite then makes -wal/-shm alike).

    An existing file is never opened here: closing any descriptor of a
    database file drops every POSIX lock this process holds on it, including
    those of SQLite connections already open (SQLite's "how to corrupt" list,
    item 2.2). A second store on the same file in one process, with another
    process writing, turned that into "disk I/O error" (found by a chaos run).

    Raises:
        OSError: ``path`` is a symbolic link (never followed), or cannot be made.
    """
    private_dir(path.parent)
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR | os.O_NOFOLLOW, PRIVATE_FILE_MODE)
    except FileExistsError:
        info = os.lstat(path)
        if stat.S_ISLNK(info.st_mode):
            raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), str(path)) from None
        if info.st_uid == os.getuid() and stat.S_IMODE(info.st_mode) & 0o077:
            path.chmod(PRIVATE_FILE_MODE)  # checked above: not a link
        return path
    try:
        os.fchmod(fd, PRIVATE_FILE_MODE)  # the mode given to open() is filtered by the umask
    finally:
        os.close(fd)
    return path
