"""Plugins by URL scheme: entry-point groups for stores and outboxes.

Built-ins register in the same groups as third-party plugins; the table
below serves a source tree run without installed metadata.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from importlib import import_module
from importlib.metadata import entry_points
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from stigg_cache.errors import ConfigurationError

STORES = "stigg_cache.stores"
OUTBOXES = "stigg_cache.outboxes"
_BUILTIN = {
    STORES: {
        "memory": "stigg_cache.stores.memory:open_memory_store",
        "sqlite": "stigg_cache.stores.sqlite:open_sqlite_store",
        "disk": "stigg_cache.stores.disk:open_disk_store",
    },
    OUTBOXES: {
        "memory": "stigg_cache.outbox.sqlite:open_sqlite_outbox",
        "sqlite": "stigg_cache.outbox.sqlite:open_sqlite_outbox",
    },
}
_INSTALL_HINTS = {
    "redis": "pip install stigg-cache-redis",
    "rediss": "pip install stigg-cache-redis",
}


def scheme_of(url: str) -> str:
    """``sqlite`` for ``sqlite:///x.db``; ``""`` when ``url`` is not a URL."""
    scheme, sep, _ = url.partition("://")
    return scheme if sep else ""


# Query parameters whose values are secrets (``?password=``, ``?auth_token=``, ``?key=``...).
_SECRET_PARAMETER = re.compile(r"pass|pwd|token|secret|key|auth|credential", re.IGNORECASE)


def redact(url: str) -> str:
    """The URL with its password, and query values named like secrets, replaced by ``***``
    (for ``status()``, logs and reprs; never for connecting)."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:  # not a URL we can take apart: show nothing of it
        return "<unparsable URL>"
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    secret_query = any(_SECRET_PARAMETER.search(name) for name, _ in pairs)
    if password is None and not secret_query:
        return url  # as given: urlunsplit would rewrite sqlite:////abs as sqlite://abs
    if password is not None:
        host = parts.netloc.rpartition("@")[2]
        parts = parts._replace(netloc=f"{parts.username or ''}:***@{host}")
    if secret_query:
        shown = [(k, "***" if _SECRET_PARAMETER.search(k) else v) for k, v in pairs]
        parts = parts._replace(query=urlencode(shown, safe="*/:"))
    return urlunsplit(parts)


def provides(group: str, scheme: str) -> bool:
    """Whether a plugin (or a built-in) opens ``scheme://`` URLs in ``group``."""
    return scheme in _BUILTIN[group] or any(ep.name == scheme for ep in entry_points(group=group))


def factory(group: str, url: str, what: str) -> Callable[[str], Any]:
    """The callable registered in ``group`` for the URL's scheme.

    Raises:
        ConfigurationError: the URL is malformed or nothing is registered for its scheme.
    """
    scheme = scheme_of(url)
    examples = ", ".join(f"{name}://" for name in sorted(_BUILTIN[group]))
    if not scheme:
        raise ConfigurationError(f"{what} {url!r} is not a URL: use one of {examples} or a plugin")
    found = [ep for ep in entry_points(group=group) if ep.name == scheme]
    if found:
        loaded: Callable[[str], Any] = found[0].load()
        return loaded
    if scheme in _BUILTIN[group]:
        module, _, name = _BUILTIN[group][scheme].partition(":")
        builtin: Callable[[str], Any] = getattr(import_module(module), name)
        return builtin
    known = sorted({ep.name for ep in entry_points(group=group)} | set(_BUILTIN[group]))
    hint = f" ({_INSTALL_HINTS[scheme]})" if scheme in _INSTALL_HINTS else ""
    raise ConfigurationError(
        f"no {what} is registered for {scheme}://{hint}; known schemes: {', '.join(known)}"
    )
