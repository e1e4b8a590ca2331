"""Plugins by URL scheme: entry-point groups for stores and outboxes.

Built-ins register in the same groups as third-party plugins; the table
below serves a source tree run without installed metadata.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from importlib import import_module
from importlib.metadata import entry_points
from typing import Any
from urllib.parse import unquote

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
# A query parameter's name and its ``=``: where one value ends and the next parameter begins.
_PARAMETER = re.compile(r"(?:(?<=[?&;])|^)([A-Za-z_][A-Za-z0-9_.%-]*)=")


def redact(url: str) -> str:
    """The URL with its password, and query values named like secrets, replaced by ``***``
    (for ``status()``, logs, reprs and messages; never for connecting).

    Robust to any password: one holding ``/``, ``?``, ``#`` or ``@`` unencoded is
    not a URL ``urlsplit`` reads as its writer meant (it ends the host at the
    first ``/``), so nothing here relies on it. In the user-info, everything from
    the first ``:`` to the *last* ``@`` is the password; in the query, a secret's
    value runs to the next ``&name=`` (so write ``&`` in a password as ``%26``).
    Where a URL reads two ways, what either way calls a secret is hidden.
    """
    start = url.find("://") + 3 if "://" in url else 0
    hidden = [False] * len(url)
    at = url.rfind("@", start)
    colon = url.find(":", start, at)
    if at >= 0 and colon >= 0:  # user:password@ (and a user-only user-info hides nothing)
        hidden[colon + 1 : at] = [True] * (at - colon - 1)
    query = url.find("?", start)
    names = [] if query < 0 else list(_PARAMETER.finditer(url, query + 1))
    for index, name in enumerate(names):
        if _SECRET_PARAMETER.search(unquote(name.group(1))):
            end = names[index + 1].start() - 1 if index + 1 < len(names) else len(url)
            hidden[name.end() : end] = [True] * (end - name.end())
    return _masked(url, hidden)


def _masked(text: str, hidden: list[bool]) -> str:
    """``text`` with each run of hidden characters shown as ``***``."""
    shown: list[str] = []
    for index, char in enumerate(text):
        if not hidden[index]:
            shown.append(char)
        elif index == 0 or not hidden[index - 1]:
            shown.append("***")
    return "".join(shown)


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
        raise ConfigurationError(
            f"{what} {redact(url)!r} is not a URL: use one of {examples} or a plugin"
        )
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


def opened(
    make: Callable[..., Any], url: str, *, read_only: bool, environment: str | None = None
) -> Any:
    """What ``make`` (a factory :func:`factory` found) opens for ``url``.

    A factory opens read-only when it takes ``read_only`` (plugins: ``def open_x(url, *,
    read_only=False)``); a plugin's that does not is refused rather than trusted not to write.
    ``environment`` (the client's :func:`~stigg_cache.environment.environment_token`)
    is handed to a factory that takes it (``environment=None``), which keeps what it holds
    for one environment apart from another's.

    Raises:
        ConfigurationError: read-only was asked of a factory that cannot.
    """
    parameters = inspect.signature(make).parameters.values()
    options: dict[str, Any] = {}
    if environment is not None and any(
        p.name == "environment" or p.kind is p.VAR_KEYWORD for p in parameters
    ):
        options["environment"] = environment
    if not read_only:
        return make(url, **options)
    if not any(p.name == "read_only" or p.kind is p.VAR_KEYWORD for p in parameters):
        raise ConfigurationError(
            f"{redact(url)}: its plugin ({make.__module__}) cannot open read-only (its "
            "factory takes no read_only=), so a tool that only looks will not open it"
        )
    return make(url, read_only=True, **options)
