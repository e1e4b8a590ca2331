"""Which process owns what: the renewals a child of ``os.fork`` runs (DESIGN §8).

A client built before a fork (``gunicorn --preload``) is copied into every
worker with its parent's sockets, database connections, locks and in-flight
work, but none of its threads. Used as they are, a child reads answers meant
for the parent on a shared keep-alive socket, writes a SQLite file through a
connection whose locks it does not hold, and waits forever on a lock another
thread held at the fork. So each object that holds such state registers a
renewal with :func:`renew_after_fork`; in the child every renewal runs once,
right after the fork, before the child runs anything else of ours.

A renewal replaces, it never closes: closing the parent's SQLite connection in
the child can checkpoint or delete the parent's WAL, and closing a pooled
connection may shut down a socket the parent still reads. What is replaced is
:func:`abandon`-ed instead: kept referenced, so its finaliser never runs here.
Threads are not started by a renewal; their owners start them on first use.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

_T = TypeVar("_T")

logger = logging.getLogger("stigg_cache")  # the library's logger (_log renews through us)
_renewals: weakref.WeakKeyDictionary[Any, Callable[[Any], None]] = weakref.WeakKeyDictionary()
_abandoned: list[object] = []


def renew_after_fork(owner: _T, renew: Callable[[_T], None]) -> None:
    """Run ``renew(owner)`` in every child forked while ``owner`` lives (held weakly)."""
    _renewals[owner] = renew


def abandon(*inherited: object) -> None:
    """Keep a parent's objects alive, unused, for the life of this process."""
    _abandoned.extend(inherited)


def renewed(event: threading.Event) -> threading.Event:
    """A new event in the state of an inherited one (whose lock a parent's thread may hold)."""
    fresh = threading.Event()
    if event.is_set():
        fresh.set()
    return fresh


def fresh_lock(owner: object) -> None:
    """The renewal of an object whose only process state is ``self._lock``."""
    owner._lock = threading.Lock()  # type: ignore[attr-defined]


def _in_child() -> None:
    for owner, renew in list(_renewals.items()):
        try:
            renew(owner)
        except Exception:  # one broken renewal must not leave the rest undone
            logger.exception(
                "stigg_cache.fork_renewal_failed: %s",
                type(owner).__name__,
                extra={"event": "stigg_cache.fork_renewal_failed"},
            )


os.register_at_fork(after_in_child=_in_child)
