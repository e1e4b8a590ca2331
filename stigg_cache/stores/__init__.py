"""Stores: where snapshots persist between checks and across restarts.

Built-ins register under the entry-point group ``stigg_cache.stores`` exactly
as third-party plugins do; :func:`open_store` resolves a URL's scheme there.
A store holding connections or locks renews them in a forked child with
:func:`renew_after_fork` (``gunicorn --preload`` builds the client before the fork).

A store holds bytes under string keys. What the client writes there is public too, so
a store's author, a tool or a test can read and write it: :func:`snapshot_key` names a
customer's (or resource's) entry, every such key starts with :data:`SNAPSHOT_PREFIX`,
and :func:`encode_snapshot` / :func:`decode_snapshot` are the entry's codec.
"""

from __future__ import annotations

from typing import cast

from stigg_cache._support.fork import fresh_lock, renew_after_fork
from stigg_cache._support.plugins import STORES, factory, opened
from stigg_cache._support.plugins import redact as redact_url
from stigg_cache.environment import DEFAULT_NAMESPACE, LEGACY_STORE_NAME, default_folder
from stigg_cache.stores._codec import (
    SNAPSHOT_PREFIX,
    OutdatedEntryError,
    decode_snapshot,
    encode_snapshot,
    snapshot_key,
)
from stigg_cache.stores.base import MISSING, Missing, Store
from stigg_cache.stores.read_only import ReadOnlyStore

ENTRY_POINT_GROUP = STORES


def default_store_url(namespace: str = DEFAULT_NAMESPACE, *, adopt: bool = True) -> str:
    """SQLite in the user's cache directory (platform convention), in the folder of the
    environment's ``namespace`` (:func:`stigg_cache.environment.default_folder`: ``adopt``
    lets it adopt an earlier version's files; tools that only look pass ``False``)."""
    return f"sqlite:///{default_folder(namespace, adopt=adopt) / LEGACY_STORE_NAME}"


def open_store(url: str, *, read_only: bool = False) -> Store:
    """Open the store a URL names (``sqlite:////abs/x.db``, ``disk:////abs/dir``, ``memory://``,
    plugins; three slashes and a relative path: relative to the working directory).

    ``read_only``: open an existing store for reading only (tools that look, such as
    ``stigg-cache inspect``): nothing is created, set up or written, and writes fail.

    Raises:
        StoreNotFoundError: read-only, and there is no store there.
        ConfigurationError: no store is registered for the scheme, the URL is malformed,
            read-only and it is not a snapshot store (an outbox), or its plugin cannot
            open read-only.
    """
    store = cast("Store", opened(factory(STORES, url, "store"), url, read_only=read_only))
    if not read_only or isinstance(store, ReadOnlyStore):
        return store
    return ReadOnlyStore(store)


__all__ = [
    "ENTRY_POINT_GROUP",
    "MISSING",
    "SNAPSHOT_PREFIX",
    "Missing",
    "OutdatedEntryError",
    "Store",
    "decode_snapshot",
    "default_store_url",
    "encode_snapshot",
    "fresh_lock",
    "open_store",
    "redact_url",
    "renew_after_fork",
    "snapshot_key",
]
