"""A client dropped without ``close()``: warned about, as ``sqlite3`` and httpx do, and closed.

Its threads (flusher, fetches, policy watcher) hold its parts, not the client,
so the client itself can be collected while they run on: 30 clients dropped
held 183 threads and 341 file descriptors. A finaliser closes what the client
built, on a short-lived thread of its own (the collector may run inside one of
the client's threads, or while one of its locks is held: closing there could
wait on itself). Not at interpreter exit: a client kept for the life of the
process is not a leak.
"""

from __future__ import annotations

import threading
import warnings
import weakref
from collections.abc import Callable
from typing import Any


def when_dropped(
    owner: object, name: str, *closers: Callable[[], None]
) -> weakref.finalize[Any, Any]:
    """Warn and run ``closers`` once ``owner`` is collected; ``detach()`` it on ``close()``."""
    finalizer = weakref.finalize(owner, _dropped, name, closers)
    finalizer.atexit = False
    return finalizer


def _dropped(name: str, closers: tuple[Callable[[], None], ...]) -> None:
    try:
        warnings.warn(
            f"unclosed {name}: call close() (or use it in a with block); closing it now",
            ResourceWarning,
            stacklevel=2,
        )
    finally:  # a warning made an error (-W error) still closes it
        threading.Thread(
            target=_close, args=closers, name="stigg-cache-dropped", daemon=True
        ).start()


def _close(*closers: Callable[[], None]) -> None:
    for close in closers:
        close()
