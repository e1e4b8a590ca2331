"""AsyncResilientClient: ResilientClient for asyncio services.

Not a second orchestrator: a check drives the same decision walk
(:mod:`stigg_cache.core.walk`) through :class:`ResilientClient`'s own steps.
Each state says what its step waits on (``io``): memory steps run on the event
loop (with the I/O sites refusing, :mod:`stigg_cache._support.memory_only`, should a
state be typed wrongly); store reads and fetches within the check budget are
awaited on a worker thread, and the walk goes on from where it stood. A check
the in-memory cache answers returns without awaiting anything. Usage written
durably to disk, flushes and the like run on a worker thread. Asyncio SDK
clients (``stigg.AsyncStigg``, the v2 ``AsyncStiggClient``, the sidecar SDK)
run their coroutines on the loop the client was built in.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import Any, Concatenate, ParamSpec, Self, TypeVar, assert_never

from stigg_cache._engine.fastpath import BOOLEAN, ENUM, GENERIC, METERED, NUMERIC, E, Kind
from stigg_cache._runtime import DEFAULT_FETCH_TIMEOUT_S
from stigg_cache._support import fork
from stigg_cache._support.dropped import when_dropped
from stigg_cache._support.memory_only import MEMORY_ONLY
from stigg_cache.adapters import adapt, environment_of
from stigg_cache.client import ResilientClient, surface
from stigg_cache.core import validate as check
from stigg_cache.core import walk
from stigg_cache.models import AnyEntitlement, Snapshot

_P = ParamSpec("_P")
_T = TypeVar("_T")
_S = TypeVar("_S")
DEFAULT_THREADS = 16  # checks waiting on Stigg at once; each waits at most check_timeout
_Async = Callable[Concatenate["AsyncResilientClient", _P], Coroutine[Any, Any, _T]]


def _offloaded(method: Callable[Concatenate[ResilientClient, _P], _T]) -> _Async[_P, _T]:
    """The async form of a method that may block: always on a worker thread."""

    async def offloaded(self: AsyncResilientClient, /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        return await self._offload(method, *args, **kwargs)

    functools.update_wrapper(offloaded, method)
    return offloaded


def _checked(
    method: Callable[Concatenate[ResilientClient, _P], _T], kind: Kind[Any], *, fast: bool = True
) -> _Async[_P, _T]:
    """The async form of a check: the blocking one's signature and docstring; the fast path
    on the loop, else the walk awaited (:meth:`AsyncResilientClient._asked`).

    Written out once, at import, with the blocking method's exact parameters (as attrs
    writes ``__init__``): an awaited warm check binds its arguments as a plain call does,
    and no check is written twice. ``fast=False``: a check the fast path does not serve.
    """
    signature = inspect.signature(method)
    bare = [p.replace(annotation=p.empty) for p in list(signature.parameters.values())[1:]]
    usage, values = (
        name if name in signature.parameters else "None"
        for name in ("requested_usage", "requested_values")
    )
    then = ".has_access" if signature.return_annotation in (bool, "bool") else ""
    asked = "kind, customer_id, feature_id, resource_id"
    lines = [f"async def {method.__name__}(self, {str(inspect.Signature(bare))[1:-1]}):"]
    if fast:
        lines += [
            f"    warm = self._checks.fast({asked}, {usage})",
            "    if warm is not None:",
            f"        return warm{then}",
        ]
    lines.append(f"    return (await self._asked({asked}, {usage}, {values})){then}")
    namespace: dict[str, Any] = {"kind": kind}
    exec("\n".join(lines), namespace)  # noqa: S102 - our own signatures, as attrs does
    checked: _Async[_P, _T] = namespace[method.__name__]
    functools.update_wrapper(checked, method)
    return checked


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
        api_key, base_url = options.pop("api_key", None), options.pop("base_url", None)
        if options.get("namespace") is None:  # the adapter hides the inner client's key
            options["namespace"] = environment_of(inner, api_key, base_url)
        adapter = adapt(
            inner,
            api_key=api_key,
            base_url=base_url,
            fetch_timeout_s=options.get("fetch_timeout", DEFAULT_FETCH_TIMEOUT_S),
            loop=running_loop(),
        )
        try:
            self._core = ResilientClient(adapter, **options)
        except BaseException:
            adapter.close()
            raise
        self._threads = threads
        checks = surface(self._core)
        self._checks, self._walker = checks.checks, checks.walker
        self._pool = pool = ThreadPoolExecutor(threads, thread_name_prefix="stigg-cache-async")
        fork.renew_after_fork(self, AsyncResilientClient._renew)
        self._core._dropped.detach()  # dropped, this one is what the user forgot to close
        runtime = self._core._runtime
        self._dropped = when_dropped(
            self, repr(self), runtime.close, functools.partial(pool.shutdown, wait=False)
        )
        self.outbox = self._core.outbox
        self.status = self._core.status
        self.on_status_change = self._core.on_status_change
        self.on_reconcile = self._core.on_reconcile
        self.on_decision = self._core.on_decision

    def _renew(self) -> None:
        """In a forked child the pool's threads are gone (it would queue calls forever)."""
        fork.abandon(self._pool)
        self._pool = ThreadPoolExecutor(self._threads, thread_name_prefix="stigg-cache-async")

    # -- checks: the sync client's, with the walk's I/O awaited ---------------------

    get_boolean_entitlement = _checked(ResilientClient.get_boolean_entitlement, BOOLEAN)
    get_numeric_entitlement = _checked(ResilientClient.get_numeric_entitlement, NUMERIC)
    get_metered_entitlement = _checked(ResilientClient.get_metered_entitlement, METERED)
    get_enum_entitlement = _checked(ResilientClient.get_enum_entitlement, ENUM, fast=False)
    get_entitlement = _checked(ResilientClient.get_entitlement, GENERIC, fast=False)
    has_access = _checked(ResilientClient.has_access, GENERIC)

    async def get_entitlements(
        self, *, customer_id: str, resource_id: str | None = None
    ) -> Snapshot:
        """Every entitlement of a customer, with the decision that produced them."""
        answer = await self._walked(check.every_feature(customer_id, resource_id))
        assert isinstance(answer, Snapshot)
        return answer

    async def _asked(self, kind: Kind[E], *question: object) -> E:
        """A check the fast path did not answer, the walk awaited (``Checks.ask``'s)."""
        asked = self._checks.asked(kind, *question)
        return self._checks.answered(asked, await self._walked(asked.request))

    async def _walked(self, question: walk.Question) -> AnyEntitlement | Snapshot:
        """The decision walk: each step on the loop if its state's ``io`` is memory,
        else on a worker thread (as hishel's driver awaits the I/O its states name)."""
        walker = self._walker
        state = walker.begin(question)
        while not isinstance(state, walk.Answered):
            match state.io:
                case walk.IO.MEMORY:
                    state = _on_loop(walker.step, state)
                case walk.IO.STORE | walk.IO.STIGG:
                    state = await self._on_thread(walker.step, state)
                case _:
                    assert_never(state.io)
        match state.io:
            case walk.IO.MEMORY:
                answer, _ = _on_loop(functools.partial(walker.finish, blocking=False), state)
            case walk.IO.STORE | walk.IO.STIGG:
                answer, _ = await self._on_thread(walker.finish, state)
            case _:
                assert_never(state.io)
        return answer

    async def _on_thread(self, step: Callable[[_S], _T], state: _S) -> _T:
        """``step(state)`` on a worker thread: it reads a store or waits for Stigg."""
        return await self._running_loop().run_in_executor(self._pool, step, state)

    report_event = _offloaded(ResilientClient.report_event)
    report_usage = _offloaded(ResilientClient.report_usage)
    report_usage_bulk = _offloaded(ResilientClient.report_usage_bulk)
    consume = _offloaded(ResilientClient.consume)
    flush = _offloaded(ResilientClient.flush)
    reconcile = _offloaded(ResilientClient.reconcile)
    grant_promotional_entitlements = _offloaded(ResilientClient.grant_promotional_entitlements)
    revoke_promotional_entitlement = _offloaded(ResilientClient.revoke_promotional_entitlement)

    async def aclose(self) -> None:
        """Stop background work and release what this client opened; every call after
        this raises :class:`~stigg_cache.ClientClosedError` (``aclose()`` itself does not)."""
        self._dropped.detach()
        if self._core._runtime.closed:
            return
        await self._running_loop().run_in_executor(self._pool, self._core.close)
        self._pool.shutdown(wait=False)

    async def __aenter__(self) -> Self:
        self._core._runtime.usable()
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
        self._core._runtime.usable()  # refused here: a closed client's pool is shut down
        call = functools.partial(method, self._core, *args, **kwargs)
        return await self._running_loop().run_in_executor(self._pool, call)

    def __repr__(self) -> str:
        return f"Async{self._core!r}"


def _on_loop(step: Callable[[_S], _T], state: _S) -> _T:
    """``step(state)`` here, on the event loop: its state's ``io`` is memory, and the
    I/O sites refuse (:func:`~stigg_cache._support.memory_only.refuse_io`) should it not be."""
    token = MEMORY_ONLY.set(True)
    try:
        return step(state)
    finally:
        MEMORY_ONLY.reset(token)
