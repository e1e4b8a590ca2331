"""Which Stigg environment a client talks to, and where its default files live (DESIGN §11).

One OS user often runs staging and production, or two Stigg environments, on
one host. A snapshot cached for one must never answer the other's check, and
usage queued with one API key must never be sent with another. So each
environment gets a *namespace*: :func:`environment_token` of its base URL and
API key (a digest of the key: the key itself is never written anywhere), or
the ``namespace=`` a user gives. The default store and outbox of a namespace
live in a folder of their own under the user's cache directory.

Files of earlier versions (one store and one outbox for everything the OS user
ran) are adopted once: the first namespace to start beside them stamps them
as its own (``stigg-cache-outbox.db.environment``) and keeps using them, with
the usage they hold; every other namespace gets fresh files. A stamp is
written with ``link``, so two processes starting together agree on one owner.

A store or outbox file a user names (``store=``, ``outbox=``) is stamped the same way
(``<file>.environment``) by the first environment to use it, which keeps its names;
a client of another environment on it keeps its snapshots under keys of its own
(prefixed by its namespace) and its usage in an outbox file of its own
(``x-outbox-<namespace>.db``): never the owner's, never sent with the owner's key.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

import platformdirs

from stigg_cache.errors import ConfigurationError

DEFAULT_NAMESPACE = "default"  # a client whose base URL and key cannot be told (a custom adapter)
STAMP_SUFFIX = ".environment"
DIGEST_HEX_CHARS = 16  # 64 bits of SHA-256: apart for every real pair of keys, reveals none
_DIGEST_LABEL = b"stigg-cache environment v1\x00"  # a digest of ours, never a bare hash of a key
_NAMESPACE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_NOT_IN_NAME = re.compile(r"[^a-z0-9.-]+")
LEGACY_STORE_NAME = "stigg-cache.db"
LEGACY_OUTBOX_NAME = "stigg-cache-outbox.db"


def environment_token(base_url: str, api_key: str) -> str:
    """A name for the Stigg environment at ``base_url`` reached with ``api_key``, safe in a
    file name or a key prefix: ``<host>-<16 hex digits>`` (``api.stigg.io-3f9c...``).

    The host is for people reading a folder listing; the digest covers the whole base URL
    and the key, so two keys (or two URLs) never share a token. The key cannot be read back.
    """
    parts = urlsplit(base_url.strip())
    host = (parts.hostname or "stigg") + (f"_{parts.port}" if parts.port else "")
    normal = f"{parts.scheme.lower()}://{host}{parts.path.rstrip('/')}"
    digest = hashlib.sha256(
        _DIGEST_LABEL + normal.encode() + b"\x00" + api_key.encode()
    ).hexdigest()
    slug = _NOT_IN_NAME.sub("_", host.lower()).strip("_")[:40] or "stigg"
    return f"{slug}-{digest[:DIGEST_HEX_CHARS]}"


def checked_namespace(namespace: object) -> str:
    """A namespace given by a user, checked: letters, digits, ``.``, ``_``, ``-``.

    Raises:
        ConfigurationError: anything else (it names a folder).
    """
    if not isinstance(namespace, str) or not _NAMESPACE.fullmatch(namespace):
        raise ConfigurationError(
            f"namespace must be 1-100 letters, digits, '.', '_' or '-' (starting with a "
            f"letter or digit), got {namespace!r}"
        )
    return namespace


def cache_root() -> Path:
    """The user's cache directory for stigg-cache (platform convention)."""
    return Path(platformdirs.user_cache_dir("stigg-cache"))


def default_folder(namespace: str, *, adopt: bool = True) -> Path:
    """The folder of a namespace's default store and outbox.

    The cache directory itself when the files of an earlier version are there and are
    (or, ``adopt`` and unstamped, now become) this namespace's; ``<cache>/<namespace>``
    otherwise. With ``adopt=False`` (tools that only look) nothing is written.
    """
    root = cache_root()
    legacy = [root / LEGACY_STORE_NAME, root / LEGACY_OUTBOX_NAME]
    if any(path.exists() for path in legacy):
        stamp = root / (LEGACY_OUTBOX_NAME + STAMP_SUFFIX)
        owner = claim(stamp, namespace) if adopt else stamped(stamp)
        if owner in (namespace, None):  # None: only looking, and the first would adopt them
            return root
    return root / namespace


def stamped(stamp: Path) -> str | None:
    """The namespace written in ``stamp``, or ``None`` if there is none."""
    try:
        return stamp.read_text(encoding="utf-8").strip() or None
    except FileNotFoundError:
        return None


def claim(stamp: Path, namespace: str) -> str:
    """The namespace that owns what ``stamp`` marks: the one already written there, or
    ``namespace``, now written (atomically: of two processes racing, one wins, both see it)."""
    owner = stamped(stamp)
    if owner is not None:
        return owner
    stamp.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=stamp.parent, prefix=".stamp-")  # created 0600
    draft = Path(name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(namespace + "\n")
        with contextlib.suppress(FileExistsError):  # another process won: its stamp holds
            stamp.hardlink_to(draft)
    finally:
        draft.unlink()
    return stamped(stamp) or namespace


def owned_by_another(path: Path, namespace: str) -> str | None:
    """The environment that owns the files a user named at ``path`` (an explicit store or
    outbox), if not ``namespace``; ``None`` when ``namespace`` does (the first to use them:
    stamped now, ``<path>.environment``, as the default files are)."""
    owner = claim(path.with_name(path.name + STAMP_SUFFIX), namespace)
    return None if owner == namespace else owner


def apart_from(path: Path, namespace: str) -> Path:
    """Where ``namespace`` keeps what it would have kept at ``path``, another
    environment's: ``x-outbox.db`` -> ``x-outbox-<namespace>.db``, beside it."""
    return path.with_name(f"{path.stem}-{namespace}{path.suffix}")


def namespaces_on_disk() -> list[str]:
    """The namespaces that have default files here (for a tool's message)."""
    root = cache_root()
    found = {path.parent.name for path in root.glob(f"*/{LEGACY_OUTBOX_NAME}")}
    found |= {path.parent.name for path in root.glob(f"*/{LEGACY_STORE_NAME}")}
    owner = stamped(root / (LEGACY_OUTBOX_NAME + STAMP_SUFFIX))
    if owner is not None:
        found.add(owner)
    return sorted(found)


__all__ = [
    "DEFAULT_NAMESPACE",
    "apart_from",
    "cache_root",
    "checked_namespace",
    "claim",
    "default_folder",
    "environment_token",
    "namespaces_on_disk",
    "owned_by_another",
    "stamped",
]
