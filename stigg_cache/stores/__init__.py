"""Stores: where snapshots persist between checks and across restarts.

Built-ins register under the entry-point group ``stigg_cache.stores`` exactly
as third-party plugins do; :func:`open_store` resolves a URL's scheme there.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from pathlib import Path
from typing import cast

import platformdirs

from stigg_cache.errors import ConfigurationError
from stigg_cache.stores.base import MISSING, Missing, Store

ENTRY_POINT_GROUP = "stigg_cache.stores"
_BUILTIN = {
    "memory": "stigg_cache.stores.memory:open_memory_store",
    "sqlite": "stigg_cache.stores.sqlite:open_sqlite_store",
    "disk": "stigg_cache.stores.disk:open_disk_store",
}


def default_store_url() -> str:
    """SQLite in the user's cache directory (platform convention)."""
    path = Path(platformdirs.user_cache_dir("stigg-cache")) / "stigg-cache.db"
    return f"sqlite:///{path}"


def open_store(url: str) -> Store:
    """Open the store a URL names (``memory://``, ``sqlite:///x.db``, ``disk:///dir``, plugins).

    Raises:
        ConfigurationError: no store is registered for the scheme, or the URL is malformed.
    """
    scheme, sep, _ = url.partition("://")
    if not sep:
        raise ConfigurationError(
            f"store {url!r} is not a URL: use memory://, sqlite:///path.db or disk:///dir"
        )
    found = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == scheme]
    if found:
        factory = found[0].load()
    elif scheme in _BUILTIN:  # running from a source tree without installed metadata
        module, _, name = _BUILTIN[scheme].partition(":")
        factory = getattr(__import__(module, fromlist=[name]), name)
    else:
        known = sorted({ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)} | set(_BUILTIN))
        hint = " (pip install stigg-cache-redis)" if scheme == "redis" else ""
        raise ConfigurationError(
            f"no store is registered for {scheme}://{hint}; known schemes: {', '.join(known)}"
        )
    return cast("Store", factory(url))


__all__ = ["ENTRY_POINT_GROUP", "MISSING", "Missing", "Store", "default_store_url", "open_store"]
