"""Adapters: each supported Stigg client behind one small interface.

Clients are recognised by module and class name, never by importing an SDK
the user did not install (three Stigg distributions install the same
top-level ``stigg`` module and overwrite each other).
"""

from __future__ import annotations

import os
from typing import Any

from stigg_cache.adapters.base import Adapter
from stigg_cache.errors import ConfigurationError

SUPPORTED = (
    "stigg.Stigg (pip install 'stigg-cache[rest]'), or None with api_key= for the built-in client"
)


def _is_stainless_rest(inner: Any) -> bool:
    cls = type(inner)
    return (
        cls.__module__.split(".")[0] == "stigg"
        and cls.__name__ == "Stigg"
        and hasattr(inner, "with_options")
        and hasattr(inner, "v1")
    )


def adapt(
    inner: object, *, api_key: str | None, base_url: str | None, fetch_timeout_s: float
) -> Adapter:
    """The adapter for a user's Stigg client (or the built-in one for ``None``).

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
        return HttpxRestAdapter(api_key=key, base_url=url)
    if isinstance(inner, Adapter):
        return inner
    if _is_stainless_rest(inner):
        from stigg_cache.adapters.stigg_rest import StiggRestAdapter  # noqa: PLC0415 - imports the user's SDK

        return StiggRestAdapter(inner, fetch_timeout_s=fetch_timeout_s)
    raise TypeError(
        f"ResilientClient cannot wrap a {type(inner).__module__}.{type(inner).__qualname__}: "
        f"supported are {SUPPORTED}, or any object with the Adapter interface"
    )


__all__ = ["Adapter", "adapt"]
