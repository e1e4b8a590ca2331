"""AsyncResilientClient: ResilientClient for asyncio services.

Not a second orchestrator: every method runs :class:`ResilientClient`'s own.
A check is first tried from memory on the event loop, with store reads and
network waits forbidden (:mod:`stigg_cache._memory_only`): a check the
in-memory cache answers returns without awaiting anything. Anything else
(a store read, a fetch within the check budget, usage written durably to
disk, a flush) runs on a worker thread the coroutine awaits, so the loop
never blocks. Asyncio SDK clients (``stigg.AsyncStigg``, the v2
``AsyncStiggClient``, the sidecar SDK) run their coroutines on the loop the
client was built in.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import Any, Concatenate, ParamSpec, Self, TypeVar

from stigg_cache import _fork
from stigg_cache import _validate as check
from stigg_cache._memory_only import MEMORY_ONLY, WouldBlock
from stigg_cache.adapters import adapt
from stigg_cache.client import DEFAULT_FETCH_TIMEOUT_S, ResilientClient

_P = ParamSpec("_P")
_T = TypeVar("_T")
DEFAULT_THREADS = 16  # checks waiting on Stigg at once; each waits at most check_timeout
_Async = Callable[Concatenate["AsyncResilientClient", _P], Coroutine[Any, Any, _T]]


def _check(method: Callable[Concatenate[ResilientClient, _P], _T]) -> _Async[_P, _T]:
    """The async form of a check: from memory if it can, else on a worker thread."""

    async def check(self: AsyncResilientClient, /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        token = MEMORY_ONLY.set(True)
        try:
            return method(self._core, *args, **kwargs)
        except WouldBlock:
            pass
        finally:
            MEMORY_ONLY.reset(token)
        return await self._offload(method, *args, **kwargs)

    functools.update_wrapper(check, method)
    return check


def _offloaded(method: Callable[Concatenate[ResilientClient, _P], _T]) -> _Async[_P, _T]:
    """The async form of a method that may block: always on a worker thread."""

    async def offloaded(self: AsyncResilientClient, /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        return await self._offload(method, *args, **kwargs)

    functools.update_wrapper(offloaded, method)
    return offloaded


class AsyncResilientClient:
    """:class:`ResilientClient` with ``async def`` for everything that can block.

    Takes the same arguments as :class:`ResilientClient`. Build it inside the
    running event loop (a startup hook) when ``inner`` is an asyncio SDK
    client: its calls then run on that loop, as they would without us. Built
    outside a loop, asyncio clients run on a private loop thread instead.

    Args:
        inner: any client :class:`ResilientClient` takes, plus ``stigg.AsyncStigg``,
            the v2 ``AsyncStiggClient`` and ``stigg_sidecar_sdk.Stigg``.
        threads: worker threads for checks that must wait (store or network)
            and for usage writes.
        **options: :class:`ResilientClient`'s keyword arguments.
    """

    def __init__(
        self, inner: object = None, *, threads: int = DEFAULT_THREADS, **options: Any
    ) -> None:
        threads = check.positive_int("threads", threads)
        # asyncio loads with the first AsyncResilientClient: a sync service need not load it
        import asyncio  # noqa: PLC0415

        from stigg_cache.adapters.bridge import running_loop  # noqa: PLC0415

        self._running_loop = asyncio.get_running_loop
        adapter = adapt(
            inner,
            api_key=options.pop("api_key", None),
            base_url=options.pop("base_url", None),
            fetch_timeout_s=options.get("fetch_timeout", DEFAULT_FETCH_TIMEOUT_S),
            loop=running_loop(),
        )
        try:
            self._core = ResilientClient(adapter, **options)
        except BaseException:
            adapter.close()
            raise
        self._threads = threads
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="stigg-cache-async")
        _fork.renew_after_fork(self, AsyncResilientClient._renew)
        self.outbox = self._core.outbox
        self.status = self._core.status
        self.on_status_change = self._core.on_status_change
        self.on_reconcile = self._core.on_reconcile
        self.on_decision = self._core.on_decision

    def _renew(self) -> None:
        """In a forked child the pool's threads are gone (it would queue calls forever)."""
        _fork.abandon(self._pool)
        self._pool = ThreadPoolExecutor(self._threads, thread_name_prefix="stigg-cache-async")

    get_boolean_entitlement = _check(ResilientClient.get_boolean_entitlement)
    get_numeric_entitlement = _check(ResilientClient.get_numeric_entitlement)
    get_metered_entitlement = _check(ResilientClient.get_metered_entitlement)
    get_enum_entitlement = _check(ResilientClient.get_enum_entitlement)
    get_entitlement = _check(ResilientClient.get_entitlement)
    has_access = _check(ResilientClient.has_access)
    get_entitlements = _check(ResilientClient.get_entitlements)

    report_event = _offloaded(ResilientClient.report_event)
    report_usage = _offloaded(ResilientClient.report_usage)
    report_usage_bulk = _offloaded(ResilientClient.report_usage_bulk)
    consume = _offloaded(ResilientClient.consume)
    flush = _offloaded(ResilientClient.flush)
    reconcile = _offloaded(ResilientClient.reconcile)
    grant_promotional_entitlements = _offloaded(ResilientClient.grant_promotional_entitlements)
    revoke_promotional_entitlement = _offloaded(ResilientClient.revoke_promotional_entitlement)

    async def aclose(self) -> None:
        """Stop background work and release what this client opened."""
        await self._running_loop().run_in_executor(self._pool, self._core.close)
        self._pool.shutdown(wait=False)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _offload(
        self,
        method: Callable[Concatenate[ResilientClient, _P], _T],
        /,
        *args: _P.args,
        **kwargs: _P.kwargs,
    ) -> _T:
        call = functools.partial(method, self._core, *args, **kwargs)
        return await self._running_loop().run_in_executor(self._pool, call)

    def __repr__(self) -> str:
        return f"Async{self._core!r}"
