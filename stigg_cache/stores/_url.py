"""Store URLs in SQLAlchemy's convention: ``scheme:///relative`` or ``scheme:////absolute``."""

from __future__ import annotations

from pathlib import Path

from stigg_cache.errors import ConfigurationError


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
