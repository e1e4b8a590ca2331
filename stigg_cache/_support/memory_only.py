"""A check tried from memory alone: AsyncResilientClient's first attempt, on the event loop.

While :data:`MEMORY_ONLY` is set, the two places a check would block (reading
the store, waiting for Stigg) raise :class:`WouldBlock` instead; the async
client then runs the same check again on a worker thread. So a check that
the in-memory cache answers never awaits, and there is one orchestrator.
"""

from __future__ import annotations

from contextvars import ContextVar

MEMORY_ONLY: ContextVar[bool] = ContextVar("stigg_cache_memory_only", default=False)


class WouldBlock(Exception):  # noqa: N818 - a signal, not an error
    """The check needs the store or the network."""


def refuse_io() -> None:
    """Raise :class:`WouldBlock` if the current check must not block."""
    if MEMORY_ONLY.get():
        raise WouldBlock
