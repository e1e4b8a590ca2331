"""Adapters: each supported Stigg client behind one small interface.

Clients are recognised by module and class name, never by importing an SDK
the user did not install (three Stigg distributions install the same
top-level ``stigg`` module and overwrite each other). Asyncio clients are
put behind the blocking interface by a :class:`~stigg_cache.adapters.bridge.LoopBridge`.

Stigg's REST answer (the ``data`` object of ``GET .../entitlements``) is read into a
:class:`~stigg_cache.models.Snapshot` by :func:`parse_entitlements` and written back by
:func:`snapshot_to_json`: an adapter for another client speaking that JSON reads with the
one, a fake Stigg answers with the other.
"""

from __future__ import annotations

import importlib
import inspect
import os
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeGuard

from stigg_cache.adapters._closing import ClosedAfterCalls
from stigg_cache.adapters._environment import environment_of
from stigg_cache.adapters._stigg_json import parse_entitlements, snapshot_to_json
from stigg_cache.adapters.base import Adapter, AsyncAdapter
from stigg_cache.errors import ConfigurationError, InvalidTypeError

if TYPE_CHECKING:  # only asyncio clients need it, and they load it themselves
    import asyncio

SUPPORTED = (
    "stigg.Stigg / stigg.AsyncStigg (pip install 'stigg-cache[rest]'), "
    "the StiggClient of stigg-api-client (pip install 'stigg-cache[graphql]'), "
    "StiggClient / AsyncStiggClient of stigg-api-client-v2 "
    "(pip install 'stigg-cache[graphql-v2]'), "
    "stigg_sidecar_sdk.Stigg (pip install 'stigg-cache[sidecar]'), "
    "or None with api_key= for the built-in client"
)
# One Stigg SDK per environment: these extras all install the top-level module `stigg`.
_SDK_EXTRAS = frozenset({"rest", "graphql", "graphql-v2", "sidecar"})
_EXCLUSIVE = "the rest, graphql, graphql-v2 and sidecar extras exclude one another"
# (top-level module, class name) -> what the object is, for each SDK class we adapt
_KNOWN = {
    ("stigg", "Stigg"): "rest",
    ("stigg", "AsyncStigg"): "rest-async",
    ("stigg", "StiggClient"): "graphql",
    ("stigg", "AsyncStiggClient"): "graphql-v2-async",
    ("stigg_sidecar_sdk", "Stigg"): "sidecar",
}


def require(module: str, distribution: str, extra: str) -> ModuleType:
    """Import an optional module, or say which extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        note = f" ({_EXCLUSIVE})" if extra in _SDK_EXTRAS else ""
        raise ImportError(
            f"{module} is not importable ({error}): this needs {distribution}; "
            f"install it with: pip install 'stigg-cache[{extra}]'{note}"
        ) from error


def _kind(inner: object) -> str | None:
    for cls in type(inner).__mro__:
        kind = _KNOWN.get((cls.__module__.split(".")[0], cls.__name__))
        if kind is not None:
            return kind
    return None


def adapt(
    inner: object,
    *,
    api_key: str | None,
    base_url: str | None,
    fetch_timeout_s: float,
    loop: asyncio.AbstractEventLoop | None = None,
) -> Adapter:
    """The adapter for a user's Stigg client (or the built-in one for ``None``).

    Asyncio clients run on ``loop`` (else on a private loop thread).

    Raises:
        ConfigurationError: no API key for the built-in client.
        TypeError: an object no adapter recognises.
    """
    if inner is None:
        key = api_key or os.environ.get("STIGG_API_KEY")
        if not key:
            raise ConfigurationError(
                "ResilientClient(None) uses the built-in REST client and needs an API key: "
                "pass api_key=... or set STIGG_API_KEY"
            )
        from stigg_cache.adapters.httpx_rest import DEFAULT_BASE_URL, HttpxRestAdapter  # noqa: PLC0415 - lazy, like every adapter

        url = base_url or os.environ.get("STIGG_BASE_URL") or DEFAULT_BASE_URL
        return ClosedAfterCalls(HttpxRestAdapter(api_key=key, base_url=url))
    found = inner if _is_async_adapter(inner) else _async_adapter(inner, fetch_timeout_s)
    if found is not None:
        from stigg_cache.adapters.bridge import LoopBridge  # noqa: PLC0415

        return LoopBridge(found, loop)  # its close() cancels the calls under way
    if isinstance(inner, Adapter):
        return inner
    return ClosedAfterCalls(_sdk_adapter(inner, fetch_timeout_s))


def _sdk_adapter(inner: object, fetch_timeout_s: float) -> Adapter:
    """The adapter for a blocking Stigg SDK client.

    Raises:
        TypeError: an object no adapter recognises.
    """
    kind = _kind(inner)
    if kind == "rest" and hasattr(inner, "with_options"):
        from stigg_cache.adapters.stigg_rest import StiggRestAdapter  # noqa: PLC0415 - imports the user's SDK

        return StiggRestAdapter(inner, fetch_timeout_s=fetch_timeout_s)
    if kind == "graphql" and hasattr(inner, "_endpoint"):
        from stigg_cache.adapters.graphql_v1 import GraphQLV1Adapter  # noqa: PLC0415

        return GraphQLV1Adapter(inner)
    if kind == "graphql" and hasattr(inner, "http_client"):
        from stigg_cache.adapters.graphql_v2 import GraphQLV2Adapter  # noqa: PLC0415

        return GraphQLV2Adapter(inner)
    raise InvalidTypeError(
        f"ResilientClient cannot wrap a {type(inner).__module__}.{type(inner).__qualname__}: "
        f"supported are {SUPPORTED}, or any object with the Adapter interface"
    )


def _is_async_adapter(inner: object) -> TypeGuard[AsyncAdapter]:
    """An object of ours or the user's with the async interface (both look alike to isinstance)."""
    return isinstance(inner, AsyncAdapter) and inspect.iscoroutinefunction(
        getattr(inner, "fetch_entitlements", None)
    )


def _async_adapter(inner: Any, fetch_timeout_s: float) -> AsyncAdapter | None:
    kind = _kind(inner)
    if kind == "rest-async" and hasattr(inner, "with_options"):
        from stigg_cache.adapters.stigg_rest import AsyncStiggRestAdapter  # noqa: PLC0415

        return AsyncStiggRestAdapter(inner, fetch_timeout_s=fetch_timeout_s)
    if kind == "graphql-v2-async":
        from stigg_cache.adapters.graphql_v2 import AsyncGraphQLV2Adapter  # noqa: PLC0415

        return AsyncGraphQLV2Adapter(inner)
    if kind == "sidecar":
        from stigg_cache.adapters.sidecar import SidecarAdapter  # noqa: PLC0415

        return SidecarAdapter(inner)
    return None


__all__ = [
    "Adapter",
    "AsyncAdapter",
    "adapt",
    "environment_of",
    "parse_entitlements",
    "require",
    "snapshot_to_json",
]
