"""Hot reload of ``fallback.yaml``: watch the folder, let the content settle, swap.

* The *parent folder* is watched, not the file: editors save by writing a
  temporary file and renaming it over the original, Kubernetes swaps a
  ``..data`` symlink, and a deleted file can come back. Any of those changes
  the folder.
* Only created / modified / moved / deleted events count. watchdog also
  reports opens and no-write closes (our own reads among them): reacting to
  those would make an idle watcher spin.
* A file caught half-written often still parses, so after the last event the
  watcher waits ``settle_s`` and reads twice, ``settle_s`` apart, until two
  reads agree.
* A file whose content hash did not change is not reloaded; a file that fails
  validation never replaces the last good policy (the error is kept for
  ``status()`` and logged).
"""

from __future__ import annotations

import logging
import os
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path

from watchdog.events import (
    EVENT_TYPE_CREATED,
    EVENT_TYPE_DELETED,
    EVENT_TYPE_MODIFIED,
    EVENT_TYPE_MOVED,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver

from stigg_cache import _fork
from stigg_cache._log import logger
from stigg_cache.errors import PolicyError
from stigg_cache.policy.loader import MAX_POLICY_BYTES, policy_version
from stigg_cache.policy.model import FallbackPolicy
from stigg_cache.stores._files import swappable_by_others

DEFAULT_SETTLE_S = 0.1  # editors finish a save within milliseconds; reload stays well under 1 s
MAX_SETTLE_ROUNDS = 50  # a file rewritten forever is read at most this many times per event
_CONTENT_EVENTS = frozenset(
    {EVENT_TYPE_CREATED, EVENT_TYPE_MODIFIED, EVENT_TYPE_MOVED, EVENT_TYPE_DELETED}
)


class _StopRace(logging.Filter):
    """Drops one line watchdog logs as an ERROR when an observer stops while its inotify
    emitter is reading an event: its own race, harmless (the event is for a watch being
    dropped), and a stray error line at every close of a client in a busy folder."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "called when the thread is inactive" not in record.getMessage()


logging.getLogger("watchdog.observers.inotify").addFilter(_StopRace())


class _FolderEvents(FileSystemEventHandler):
    def __init__(self, kick: Callable[[], None]) -> None:
        self._kick = kick

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in _CONTENT_EVENTS:
            self._kick()


def _read(path: Path) -> bytes | None:
    try:
        with path.open("rb") as handle:
            return handle.read(MAX_POLICY_BYTES + 1)
    except OSError:
        return None


def warn_if_writable_by_others(path: Path) -> bool:
    """Log a warning if anyone but this user (or root) could change the policy in force.

    Looks at the file, the file a symbolic link points to (a Kubernetes
    ConfigMap's), and the folders holding them: another user's file, a file
    others may write, and a folder where others could rename a file of theirs
    over it (writable by others without the sticky bit, or another user's).
    """
    reasons = _changeable_by_others(path)
    if reasons:
        logger.warning(
            "stigg_cache.policy_writable: %s can be changed by other users (%s), who could "
            "grant themselves features during an outage; make it and its folder yours "
            "and chmod 600 / 700 them",
            path,
            "; ".join(reasons),
            extra={"event": "stigg_cache.policy_writable", "path": str(path)},
        )
    return bool(reasons)


def _changeable_by_others(path: Path) -> list[str]:
    trusted = (os.getuid(), 0)
    reasons: list[str] = []
    try:
        files = list(dict.fromkeys([path, path.resolve()]))  # the link, and what it points to
        for file in files:
            info = file.lstat() if file == path else file.stat()
            if info.st_uid not in trusted:
                reasons.append(f"{file} belongs to uid {info.st_uid}")
            elif stat.S_IMODE(info.st_mode) & (stat.S_IWOTH | stat.S_IWGRP):
                reasons.append(f"{file} is writable by group or others")
        for folder in dict.fromkeys(file.parent for file in files):
            reason = swappable_by_others(folder)
            if reason is not None:
                reasons.append(f"folder {reason}")
    except OSError:
        return reasons
    return reasons


class PolicyWatcher:
    """Holds the last good policy of a file and reloads it when the file changes.

    Raises:
        PolicyError: at construction, if the file is missing or invalid.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        on_reload: Callable[[FallbackPolicy], None] | None = None,
        settle_s: float = DEFAULT_SETTLE_S,
    ) -> None:
        self.path = Path(path).absolute()
        content = _read(self.path)
        if content is None:
            raise PolicyError([(str(self.path), None, "", "cannot read the policy file")])
        self.current = FallbackPolicy.from_yaml(content, str(self.path))
        warn_if_writable_by_others(self.path)
        self.error: str | None = None
        self.reloads = 0
        self.rejected = 0
        self._on_reload = on_reload
        self._settle_s = settle_s
        self._last_event = 0.0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._starting = threading.Lock()
        self._observer: BaseObserver | None = None
        self._worker: threading.Thread | None = None
        self.start()
        _fork.renew_after_fork(self, PolicyWatcher._renew)

    def start(self) -> None:
        """Watch from this process (once; never after ``close``)."""
        with self._starting:
            if self._worker is not None or self._stop.is_set():
                return
            observer = Observer()
            observer.daemon = True
            observer.schedule(_FolderEvents(self._kick), str(self.path.parent), recursive=False)
            observer.start()
            self._observer = observer
            self._worker = threading.Thread(
                target=self._run, daemon=True, name="stigg-cache-policy"
            )
            self._worker.start()

    def _renew(self) -> None:
        """In a forked child: the parent's watch threads are gone; watch again on first use."""
        _fork.abandon(self._observer, self._worker)
        self._wake, self._stop = threading.Event(), _fork.renewed(self._stop)
        self._starting = threading.Lock()
        self._observer = self._worker = None

    def close(self) -> None:
        """Stop watching (bounded wait for the threads)."""
        self._stop.set()
        self._wake.set()
        with self._starting:
            observer, worker = self._observer, self._worker
        if observer is not None:
            observer.stop()
            observer.join(timeout=2)
        if worker is not None:
            worker.join(timeout=2)

    def _kick(self) -> None:
        self._last_event = time.monotonic()
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait()
            self._wake.clear()
            if self._stop.is_set():
                return
            content = self._settled_content()
            if self._stop.is_set():  # closed while settling: the result is nobody's
                return
            self._consider(content)

    def _settled_content(self) -> bytes | None:
        """The file's bytes once two reads agree (``None``: missing, twice)."""
        previous: bytes | None = None
        read_once = False
        for _ in range(MAX_SETTLE_ROUNDS):
            quiet_for = time.monotonic() - self._last_event
            if quiet_for < self._settle_s:
                self._stop.wait(self._settle_s - quiet_for)
                continue
            content = _read(self.path)
            if read_once and content == previous:
                return content
            previous, read_once = content, True
            self._stop.wait(self._settle_s)
        return previous

    def _consider(self, content: bytes | None) -> None:
        old = self.current
        if content is None:
            self._reject(f"{self.path} is missing or unreadable; keeping policy {old.version}")
            return
        if policy_version(content) == old.version:
            self.error = None
            return
        try:
            new = FallbackPolicy.from_yaml(content, str(self.path))
        except PolicyError as error:
            self._reject(f"{error}\n  keeping policy {old.version}")
            return
        except Exception as error:  # a loader bug must not end hot reload for good
            self._reject(f"{self.path}: {error!r}\n  keeping policy {old.version}")
            return
        self.current = new
        self.error = None
        self.reloads += 1
        warn_if_writable_by_others(self.path)
        logger.info(
            "stigg_cache.policy_reloaded: %s %s -> %s",
            self.path,
            old.version,
            new.version,
            extra={"event": "stigg_cache.policy_reloaded", "version": new.version},
        )
        if self._on_reload is not None:
            self._on_reload(new)

    def _reject(self, message: str) -> None:
        self.rejected += 1
        self.error = message
        logger.log(
            logging.WARNING,
            "stigg_cache.policy_rejected: %s",
            message,
            extra={"event": "stigg_cache.policy_rejected"},
        )
