"""Hot reload of ``fallback.yaml``: watch the folder, let the content settle, swap.

* The *parent folder* is watched, not the file: editors save by writing a
  temporary file and renaming it over the original, Kubernetes swaps a
  ``..data`` symlink, and a deleted file can come back. Any of those changes
  the folder. So is the folder of the file a symbolic link points to, when it
  is elsewhere (followed again when the link moves).
* Only created / modified / moved / deleted events of the policy's own paths
  count: the file, each symbolic link met resolving it, and what it resolves to.
  The folder also holds other files (the app's log, the store): a write to them
  is not a reason to read the policy. watchdog also reports opens and no-write
  closes (our own reads among them): reacting to those would make an idle
  watcher spin.
* A file caught half-written often still parses, so after the last event the
  watcher waits ``settle_s`` and reads twice, ``settle_s`` apart, until two
  reads agree.
* A file whose content hash did not change is not reloaded; a file that fails
  validation (or cannot be read: the OS says why) never replaces the last good
  policy. The error is kept for ``status()`` and logged at ERROR: once, then once
  a minute while it stands.
"""

from __future__ import annotations

import contextlib
import errno
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
from watchdog.observers.api import BaseObserver, ObservedWatch

from stigg_cache._support import fork
from stigg_cache._support.files import swappable_by_others
from stigg_cache._support.log import LOG_INTERVAL_S, logger
from stigg_cache.errors import PolicyError
from stigg_cache.policy.loader import MAX_POLICY_BYTES, policy_version
from stigg_cache.policy.model import FallbackPolicy, PolicyRef

DEFAULT_SETTLE_S = 0.1  # editors finish a save within milliseconds; reload stays well under 1 s
MAX_SETTLE_ROUNDS = 50  # a file rewritten forever is read at most this many times per event
MAX_LINKS = 40  # symbolic links followed resolving the policy's path (Linux's own limit)
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


class _PolicyEvents(FileSystemEventHandler):
    """Kicks the watcher for content events on one of the policy's own paths."""

    def __init__(self, kick: Callable[[], None], paths: Callable[[], frozenset[str]]) -> None:
        self._kick = kick
        self._paths = paths

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type not in _CONTENT_EVENTS:
            return
        paths = self._paths()
        if os.fsdecode(event.src_path) in paths or os.fsdecode(event.dest_path) in paths:
            self._kick()


def links_of(path: Path) -> frozenset[str]:
    """``path``, each symbolic link met resolving it (itself, or a folder on its way, as
    Kubernetes' ``..data``), and what it resolves to: a change to any of them is a change
    to what ``path`` reads."""
    found = {str(path), os.path.realpath(path)}
    current = path
    for _ in range(MAX_LINKS):
        link = next((p for p in (current, *current.parents) if p.is_symlink()), None)
        if link is None:
            break
        found.add(str(link))
        rest = current.relative_to(link)
        current = Path(os.path.normpath(link.parent / link.readlink() / rest))
        found.add(str(current))
    return frozenset(found)


def _read(path: Path) -> bytes | OSError:
    """The file's bytes (at most one past the cap), or why they cannot be read."""
    try:
        with path.open("rb") as handle:
            return handle.read(MAX_POLICY_BYTES + 1)
    except OSError as error:
        return error


def _same(first: bytes | OSError, second: bytes | OSError) -> bool:
    """Two reads agree: the same bytes, or the same error."""
    if isinstance(first, OSError) or isinstance(second, OSError):
        return (
            isinstance(first, OSError)
            and isinstance(second, OSError)
            and (first.errno == second.errno)
        )
    return first == second


def why(error: OSError) -> str:
    """What the OS said, e.g. ``No such file or directory (ENOENT)``."""
    name = errno.errorcode.get(error.errno or 0)
    return f"{error.strerror or error}" + (f" ({name})" if name else "")


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
        PolicyError: at construction, if the file is missing, unreadable or invalid.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        on_reload: Callable[[FallbackPolicy], None] | None = None,
        settle_s: float = DEFAULT_SETTLE_S,
        log_interval_s: float = LOG_INTERVAL_S,
    ) -> None:
        """``log_interval_s``: a rejection standing is logged again this often."""
        self.path = Path(path).absolute()
        content = _read(self.path)
        if isinstance(content, OSError):
            raise PolicyError([(str(self.path), None, "", f"cannot read it: {why(content)}")])
        # the client's parts read this reference: a reload swaps the policy in it
        self.policy = PolicyRef(FallbackPolicy.from_yaml(content, str(self.path)))
        warn_if_writable_by_others(self.path)
        self.error: str | None = None
        self.reloads = 0
        self.rejected = 0
        self._on_reload = on_reload
        self._settle_s = settle_s
        self._log_interval_s = log_interval_s
        self._logged: tuple[object, float] = (None, 0.0)  # what was rejected, logged when
        self.reads = 0  # of the file, after the first: an idle watcher reads nothing
        self._last_event = 0.0
        self._kicks = 0  # events of the policy's paths so far
        self._paths = links_of(self.path)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._starting = threading.Lock()
        self._observer: BaseObserver | None = None
        self._watches: dict[Path, ObservedWatch] = {}
        self._worker: threading.Thread | None = None
        self.start()
        fork.renew_after_fork(self, PolicyWatcher._renew)

    @property
    def current(self) -> FallbackPolicy:
        """The last good policy of the file."""
        return self.policy.current

    def start(self) -> None:
        """Watch from this process (once; never after ``close``)."""
        with self._starting:
            if self._worker is not None or self._stop.is_set():
                return
            observer = Observer()
            observer.daemon = True
            observer.start()
            self._observer = observer
            self._follow_links()
            self._worker = threading.Thread(
                target=self._run, daemon=True, name="stigg-cache-policy"
            )
            self._worker.start()

    def _follow_links(self) -> None:
        """Watch the folder of the file and that of what it resolves to, and only events of
        its own paths (again after a change: a symbolic link may have moved)."""
        self._paths = links_of(self.path)
        observer = self._observer
        if observer is None or self._stop.is_set():
            return
        folders = {self.path.parent, Path(os.path.realpath(self.path)).parent}
        for gone in set(self._watches) - folders:
            with contextlib.suppress(KeyError):  # its folder went, and its watch with it
                observer.unschedule(self._watches.pop(gone))
        handler = _PolicyEvents(self._kick, lambda: self._paths)
        for folder in folders - set(self._watches):
            with contextlib.suppress(OSError):  # a link to a folder not there (yet)
                self._watches[folder] = observer.schedule(handler, str(folder), recursive=False)

    def _renew(self) -> None:
        """In a forked child: the parent's watch threads are gone; watch again on first use."""
        fork.abandon(self._observer, self._worker)
        self._wake, self._stop = threading.Event(), fork.renewed(self._stop)
        self._starting = threading.Lock()
        self._observer = self._worker = None
        self._watches = {}

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
        self._kicks += 1
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self._wake.wait(self._until_reminder()):
                self._log_rejection(self._logged[0])  # still rejected: once a minute
                continue
            self._wake.clear()
            if self._stop.is_set():
                return
            content, seen = self._settled_content()
            if self._stop.is_set():  # closed while settling: the result is nobody's
                return
            self._consider(content)
            self._follow_links()
            self._wake.clear()  # events the last read already saw are not read again
            if self._kicks != seen:
                self._wake.set()

    def _settled_content(self) -> tuple[bytes | OSError, int]:
        """The file's bytes once two reads agree (or why it cannot be read, twice), and
        how many events there had been when it was last read."""
        previous: bytes | OSError | None = None
        seen = self._kicks
        for _ in range(MAX_SETTLE_ROUNDS):
            quiet_for = time.monotonic() - self._last_event
            if quiet_for < self._settle_s:
                self._stop.wait(self._settle_s - quiet_for)
                continue
            seen = self._kicks
            content = self._read()
            if previous is not None and _same(content, previous):
                return content, seen
            previous = content
            self._stop.wait(self._settle_s)
        return (self._read() if previous is None else previous), seen

    def _read(self) -> bytes | OSError:
        self.reads += 1
        return _read(self.path)

    def _consider(self, content: bytes | OSError) -> None:
        old = self.current
        if isinstance(content, OSError):
            keeping = f"keeping policy {old.version}"
            self._reject(f"cannot read {self.path}: {why(content)}; {keeping}", content.errno)
            return
        version = policy_version(content)
        if version == old.version:
            self._accepted()
            return
        try:
            new = FallbackPolicy.from_yaml(content, str(self.path))
        except PolicyError as error:
            self._reject(f"{error}\n  keeping policy {old.version}", version)
            return
        except Exception as error:  # a loader bug must not end hot reload for good
            self._reject(f"{self.path}: {error!r}\n  keeping policy {old.version}", version)
            return
        self.policy.use(new)
        self._accepted()
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

    def _accepted(self) -> None:
        """The file holds a good policy again: a rejection after this is news, logged."""
        self.error = None
        self._logged = (None, 0.0)

    def _reject(self, message: str, what: object) -> None:
        """Keep the last good policy; log why, unless this same rejection (content, or OS
        error) was logged within the interval."""
        self.rejected += 1
        self.error = message
        logged, at = self._logged
        if what != logged or time.monotonic() - at >= self._log_interval_s:
            self._log_rejection(what)

    def _until_reminder(self) -> float | None:
        """Seconds until a rejection that stands is logged again (``None``: none stands)."""
        if self.error is None:
            return None
        return max(0.0, self._logged[1] + self._log_interval_s - time.monotonic())

    def _log_rejection(self, what: object) -> None:
        if self.error is None:
            return
        again = "still, " if what == self._logged[0] else ""
        self._logged = (what, time.monotonic())
        logger.error(
            "stigg_cache.policy_rejected: %s%s",
            again,
            self.error,
            extra={"event": "stigg_cache.policy_rejected", "rejected": self.rejected},
        )
