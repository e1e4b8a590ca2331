"""An asyncio adapter behind the blocking :class:`Adapter` interface.

The cache, fetcher and flusher work on threads; an asyncio SDK's coroutines
must run on the event loop its connections belong to. ``LoopBridge`` submits
each call to that loop (the application's, for ``AsyncResilientClient``
built inside it; else a private loop on a daemon thread) and waits for it
under the call's own deadline, so a stuck coroutine never holds a thread
longer than the budget.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Coroutine, Mapping, Sequence
from concurrent.futures import Future
from typing import Any, TypeVar

from stigg_cache._support import fork
from stigg_cache.adapters._plans import knows_plans
from stigg_cache.adapters._stigg_json import UsageCounts
from stigg_cache.adapters.base import AsyncAdapter, reads_per_minute
from stigg_cache.errors import FailureKind, StiggUnavailableError
from stigg_cache.models import Snapshot

_T = TypeVar("_T")
GRACE_S = 0.5  # beyond the call's own deadline, for the loop to deliver its result
CLOSE_TIMEOUT_S = 5.0


class LoopBridge:
    """Runs an :class:`AsyncAdapter`'s coroutines on an event loop, blocking the caller."""

    def __init__(self, adapter: AsyncAdapter, loop: asyncio.AbstractEventLoop | None) -> None:
        self.adapter = adapter
        self.name = adapter.name
        self.reads_per_minute = reads_per_minute(adapter)
        self.knows_plans = knows_plans(adapter)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = loop or self._private_loop()
        self._lock = threading.Lock()
        self._pending: set[Future[Any]] = set()
        fork.renew_after_fork(self, LoopBridge._renew)

    def _private_loop(self) -> asyncio.AbstractEventLoop:
        """Nobody's loop: a private one on a daemon thread, living as long as this bridge."""
        loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=loop.run_forever, daemon=True, name="stigg-cache-loop"
        )
        self._thread.start()
        return loop

    def _renew(self) -> None:
        """In a forked child no loop of ours runs (the parent's thread is gone).

        A private loop starts on first use. The old one is abandoned, not
        closed: its selector and self-pipe are the parent's too. The adapter
        renews its own connections.
        """
        fork.abandon(self._loop, self._thread)
        self._lock = threading.Lock()
        self._pending = set()
        self._loop = self._thread = None

    def _loop_to_use(self) -> asyncio.AbstractEventLoop:
        loop = self._loop
        if loop is None:
            with self._lock:
                if self._loop is None:
                    self._loop = self._private_loop()
                loop = self._loop
        return loop

    def fetch_entitlements(
        self, customer_id: str, resource_id: str | None, *, timeout_s: float
    ) -> Snapshot:
        return self._run(
            lambda: self.adapter.fetch_entitlements(customer_id, resource_id, timeout_s=timeout_s),
            timeout_s,
        )

    def report_events(self, events: Sequence[Mapping[str, Any]], *, timeout_s: float) -> None:
        self._run(lambda: self.adapter.report_events(events, timeout_s=timeout_s), timeout_s)

    def report_usage(
        self, usages: Sequence[Mapping[str, Any]], *, timeout_s: float
    ) -> UsageCounts | None:
        return self._run(lambda: self.adapter.report_usage(usages, timeout_s=timeout_s), timeout_s)

    def grant_promotional_entitlements(
        self, customer_id: str, grants: Sequence[Mapping[str, Any]], *, timeout_s: float
    ) -> list[dict[str, Any]]:
        grant = self.adapter.grant_promotional_entitlements
        return self._run(lambda: grant(customer_id, grants, timeout_s=timeout_s), timeout_s)

    def revoke_promotional_entitlement(
        self, customer_id: str, feature_id: str, *, timeout_s: float
    ) -> dict[str, Any]:
        revoke = self.adapter.revoke_promotional_entitlement
        return self._run(lambda: revoke(customer_id, feature_id, timeout_s=timeout_s), timeout_s)

    def close(self) -> None:
        """Cancel calls under way, close the adapter on its loop, stop the private loop."""
        with self._lock:
            pending, self._pending = self._pending, set()
        for future in pending:
            future.cancel()
        loop = self._loop
        if loop is None:  # forked and never used here: nothing was opened in this process
            return
        with contextlib.suppress(StiggUnavailableError):  # no loop: no connections either
            self._run(self.adapter.aclose, CLOSE_TIMEOUT_S)
        if self._thread is not None:
            loop.call_soon_threadsafe(loop.stop)
            self._thread.join(CLOSE_TIMEOUT_S)
            if not self._thread.is_alive():
                loop.close()

    def _run(self, make: Callable[[], Coroutine[Any, Any, _T]], timeout_s: float) -> _T:
        loop = self._loop_to_use()
        if loop.is_closed():
            raise StiggUnavailableError(FailureKind.CONNECTION, "the event loop is closed")
        if running_loop() is loop:  # waiting here would stop the loop we wait for
            raise RuntimeError(
                "a blocking stigg-cache call was made on the event loop its async SDK uses: "
                "use AsyncResilientClient and await it"
            )

        async def bounded() -> _T:
            return await asyncio.wait_for(make(), timeout_s)

        call = bounded()
        try:
            future: Future[_T] = asyncio.run_coroutine_threadsafe(call, loop)
        except RuntimeError:  # closed meanwhile
            call.close()
            raise StiggUnavailableError(
                FailureKind.CONNECTION, "the event loop is closed"
            ) from None
        with self._lock:
            self._pending.add(future)
        try:
            return future.result(timeout_s + GRACE_S)
        except TimeoutError:  # the coroutine's deadline, or a loop too busy to run it
            future.cancel()
            raise StiggUnavailableError(
                FailureKind.TIMEOUT, f"Stigg did not answer within {timeout_s:.3g}s"
            ) from None
        except asyncio.CancelledError:
            raise StiggUnavailableError(
                FailureKind.CONNECTION, "the call was cancelled (client or event loop closing)"
            ) from None
        finally:
            with self._lock:
                self._pending.discard(future)

    def __repr__(self) -> str:
        return f"LoopBridge({self.adapter!r})"


def running_loop() -> asyncio.AbstractEventLoop | None:
    """The event loop running in this thread, if any."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
