"""The durable usage outbox and its flusher; :func:`open_outbox` opens one by URL."""

from __future__ import annotations

from typing import cast

from stigg_cache._support.plugins import OUTBOXES, factory, opened, provides, scheme_of
from stigg_cache._support.url import path_from_url
from stigg_cache.environment import DEFAULT_NAMESPACE, LEGACY_OUTBOX_NAME, default_folder
from stigg_cache.outbox.base import Outbox
from stigg_cache.outbox.read_only import ReadOnlyOutbox
from stigg_cache.outbox.sqlite import outbox_beside


def default_outbox_url(
    store_url: str | None, namespace: str = DEFAULT_NAMESPACE, *, adopt: bool = True
) -> str:
    """Beside the snapshot store.

    In the store itself when its plugin also provides an outbox (``redis://``:
    shared by the fleet); ``x.db`` -> ``x-outbox.db`` for files; in memory for
    ``memory://``; else in the user's cache directory, in the folder of the
    environment's ``namespace`` (as :func:`~stigg_cache.stores.default_store_url`).
    """
    if store_url is not None:
        scheme = scheme_of(store_url)
        if scheme and provides(OUTBOXES, scheme) and scheme != "sqlite":
            return store_url
        if scheme in ("sqlite", "disk"):
            return f"sqlite:///{outbox_beside(path_from_url(store_url, scheme))}"
    return f"sqlite:///{default_folder(namespace, adopt=adopt) / LEGACY_OUTBOX_NAME}"


def open_outbox(url: str, *, read_only: bool = False, environment: str | None = None) -> Outbox:
    """``sqlite:////abs/path.db`` (durable), ``memory://`` (tests, demos: not durable), or a
    plugin's.

    ``read_only``: open an existing outbox for reading only (tools that look, such as
    ``stigg-cache outbox status``): nothing is created, migrated or written.
    ``environment``: the client's environment token, for a plugin that keeps environments
    apart (the Redis outbox: its local fallback file, and whose usage it holds).

    Raises:
        StoreNotFoundError: read-only, and there is no outbox there.
        ConfigurationError: the URL is malformed, no outbox is registered for its scheme,
            read-only and it is not an outbox (a snapshot store), or its plugin cannot
            open read-only.
    """
    make = factory(OUTBOXES, url, "outbox")
    box = cast("Outbox", opened(make, url, read_only=read_only, environment=environment))
    return ReadOnlyOutbox(box) if read_only else box
