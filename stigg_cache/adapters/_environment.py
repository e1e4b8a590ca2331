"""The Stigg environment an inner client talks to: its base URL and API key, as a namespace."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from typing import Any

from stigg_cache.adapters.httpx_rest import DEFAULT_BASE_URL
from stigg_cache.environment import DEFAULT_NAMESPACE, environment_token


def environment_of(inner: object, api_key: str | None, base_url: str | None) -> str:
    """The namespace of a client built over ``inner``: the token of its base URL and key.

    ``inner`` is ``None`` (the built-in client: ``api_key``/``base_url`` or the
    environment's ``STIGG_API_KEY``/``STIGG_BASE_URL``) or an SDK client, whose URL
    and key are read from it, or an adapter with an ``environment`` attribute.
    :data:`DEFAULT_NAMESPACE` when they cannot be told (pass ``namespace=`` then).
    """
    if inner is None:
        key = api_key or os.environ.get("STIGG_API_KEY")
        url = base_url or os.environ.get("STIGG_BASE_URL") or DEFAULT_BASE_URL
        return environment_token(url, key) if key else DEFAULT_NAMESPACE
    given = getattr(inner, "environment", None)  # an adapter that knows (the built-in one)
    if isinstance(given, str) and given:
        return given
    found_key, found_url = _credentials(inner)
    if found_key and found_url:
        return environment_token(found_url, found_key)
    return DEFAULT_NAMESPACE


def _credentials(inner: Any) -> tuple[str | None, str | None]:
    """An SDK client's API key and URL: attributes (REST), else its headers (GraphQL)."""
    endpoint = getattr(inner, "_endpoint", None)  # stigg-api-client (v1)
    http_client = getattr(inner, "http_client", None)  # stigg-api-client-v2
    key = getattr(inner, "api_key", None)
    if not isinstance(key, str):
        sources: Iterable[Any] = (
            getattr(endpoint, "base_headers", None),
            getattr(inner, "headers", None),
            getattr(http_client, "headers", None),
        )
        key = next(filter(None, (_api_key_header(headers) for headers in sources)), None)
    url = next(
        (
            str(found)
            for found in (
                getattr(inner, "base_url", None),
                getattr(endpoint, "url", None),
                getattr(inner, "url", None),
            )
            if found
        ),
        None,
    )
    return key, url


def _api_key_header(headers: Any) -> str | None:
    with contextlib.suppress(AttributeError, TypeError):
        for name, value in headers.items():
            if str(name).lower() == "x-api-key" and value:
                return str(value)
    return None
