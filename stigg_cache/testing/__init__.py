"""Public test doubles and suites: a manual clock, a fake Stigg on loopback (REST and
GraphQL: :mod:`~stigg_cache.testing.fake`; the gRPC sidecar:
:mod:`~stigg_cache.testing.sidecar`), a fault proxy (:mod:`~stigg_cache.testing.proxy`),
a faulty store, and the store and outbox conformance suites.

``stigg_cache.testing.conformance`` needs pytest; this module does not. The fakes load
with their modules, so importing this one starts nothing.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stigg_cache._runtime import Runtime
    from stigg_cache.aio import AsyncResilientClient
    from stigg_cache.client import ResilientClient


class ManualClock:
    """A clock that moves only when told to (both monotonic and wall time)."""

    def __init__(self, wall: float | None = None) -> None:
        self._mono = 10_000.0
        self._wall = time.time() if wall is None else wall
        self._lock = threading.Lock()

    def monotonic(self) -> float:
        return self._mono

    def time(self) -> float:
        return self._wall

    def advance(self, seconds: float) -> None:
        """Let ``seconds`` pass on both clocks."""
        with self._lock:
            self._mono += seconds
            self._wall += seconds

    def jump_wall(self, seconds: float) -> None:
        """Move only the wall clock (an NTP step, a VM resume)."""
        with self._lock:
            self._wall += seconds


def runtime_of(client: ResilientClient | AsyncResilientClient) -> Runtime:
    """The parts a client is made of (its store cache, usage service, fetcher, adapter,
    policy watcher, walker), for tests that look inside: the clients keep no aliases."""
    core: Any = getattr(client, "_core", client)  # async: its blocking one
    runtime: Runtime = core._runtime
    return runtime


__all__ = ["ManualClock", "runtime_of"]
