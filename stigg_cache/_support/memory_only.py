"""A guard for the event loop: I/O reached by a step that was typed as memory.

The async client runs a step on the event loop only when its state's ``io`` is
:attr:`~stigg_cache.core.walk.IO.MEMORY`, and sets :data:`MEMORY_ONLY` while it
does. Every place a check would block (reading the store, dropping an entry,
waiting for Stigg, reading the shared outbox) calls :func:`refuse_io` first, so a
state typed wrongly fails a test with :class:`WouldBlock` instead of blocking the
loop unseen. Nothing catches it: it is a bug, never a signal.
"""

from __future__ import annotations

from contextvars import ContextVar

MEMORY_ONLY: ContextVar[bool] = ContextVar("stigg_cache_memory_only", default=False)


class WouldBlock(AssertionError):  # noqa: N818 - named for what it caught, as a guard
    """A step on the event loop reached I/O: its state's ``io`` says memory, wrongly."""


def refuse_io() -> None:
    """Raise :class:`WouldBlock` if the current step runs on the event loop."""
    if MEMORY_ONLY.get():
        raise WouldBlock
