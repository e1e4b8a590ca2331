"""Store URLs in SQLAlchemy's convention: ``scheme:///relative`` or ``scheme:////absolute``."""

from __future__ import annotations

import shutil
from pathlib import Path

from stigg_cache.errors import ConfigurationError, StoreNotFoundError


def path_from_url(url: str, scheme: str) -> Path:
    """The filesystem path named by ``scheme:///path``.

    Raises:
        ConfigurationError: the URL is not of that form.
    """
    prefix = f"{scheme}:///"
    rest = url[len(prefix) :] if url.startswith(prefix) else ""
    if not rest or "?" in rest or "#" in rest:
        raise ConfigurationError(
            f"store URL {url!r} is not usable: write {scheme}:///relative/path "
            f"or {scheme}:////absolute/path"
        )
    return Path(rest)


def not_found(path: Path, scheme: str, what: str) -> StoreNotFoundError:
    """The error of a read-only open of ``scheme:///path`` where nothing is: it names the
    absolute path looked at, and for a relative URL the four-slash form of the absolute one
    (``sqlite:///var/lib/app/cache.db`` is ``./var/lib/app/cache.db``)."""
    if path.is_absolute():
        return StoreNotFoundError(f"no {what} at {path} (a read-only open creates none)")
    return StoreNotFoundError(
        f"no {what} at {path.absolute()} (a read-only open creates none): "
        f"{scheme}:///{path} is relative to the working directory; "
        f"for /{path} write {scheme}:////{path}"
    )


STORE_SHARE_OF_FREE_DISK = 10  # the default bound of a file store: a tenth of the free space
STORE_MAX_BYTES_CAP = 10 * 1024**3
STORE_MAX_BYTES_FLOOR = 64 * 1024**2


def default_store_max_bytes(url: str) -> int | None:
    """The byte bound of a file store by default: a tenth of the space free on its disk when
    the client starts, between 64 MiB and 10 GiB; ``None`` for stores not on this disk."""
    scheme = url.partition(":")[0]
    if scheme not in ("sqlite", "disk"):
        return None
    folder = path_from_url(url, scheme).absolute().parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    free = shutil.disk_usage(folder).free
    return max(STORE_MAX_BYTES_FLOOR, min(STORE_MAX_BYTES_CAP, free // STORE_SHARE_OF_FREE_DISK))
