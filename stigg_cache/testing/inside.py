"""A look inside a client, for tests and benchmarks that must set up or read what no
public verb shows: what it holds in memory, its usage sender, its refresh parallelism.

Each is one small function, so the tools (``stigg_cache.benchmarks``, ``stigg_cache.chaos``)
use public names only, and a change inside the client breaks here, in one place.
Either client may be passed: an :class:`~stigg_cache.aio.AsyncResilientClient` is looked
at through the blocking client it awaits.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from stigg_cache._engine import reconcile
from stigg_cache.aio import AsyncResilientClient
from stigg_cache.client import ResilientClient
from stigg_cache.core.terms import CachedSnapshot, ScopeKey
from stigg_cache.testing import runtime_of as _runtime

AnyClient = ResilientClient | AsyncResilientClient


def held_in_memory(client: AnyClient) -> list[tuple[ScopeKey, CachedSnapshot]]:
    """What the client holds in memory (its L1): each ``(customer_id, resource_id)`` with
    its snapshot, least recently used first. A copy: holding it keeps the entries alive."""
    return list(_runtime(client).parts.cache.l1.items())


def forget_memory(client: AnyClient) -> None:
    """Drop what the client holds in memory (its L1), as a worker started now holds
    nothing: the next check of each customer reads the store."""
    _runtime(client).parts.cache.clear_l1()


def stop_sending(client: AnyClient) -> None:
    """Stop the client's usage sender for good (it cannot be restarted): usage reported
    afterwards is made durable and counted, and stays pending in the outbox, for another
    client on the same outbox to send. To time the enqueue alone, or to fill an outbox."""
    _runtime(client).parts.usage.flusher.close()


@contextlib.contextmanager
def serial_refreshes() -> Iterator[None]:
    """Within this block, a reconciliation refreshes one customer at a time, in every client
    of this process (by default several are in flight, within the read budget): the
    baseline a parallel refresh is measured against. Not for use while another thread
    reconciles something that must stay parallel."""
    parallel = reconcile.REFRESH_PARALLEL
    reconcile.REFRESH_PARALLEL = 1
    try:
        yield
    finally:
        reconcile.REFRESH_PARALLEL = parallel


__all__ = ["forget_memory", "held_in_memory", "serial_refreshes", "stop_sending"]
