"""An SDK client we send through: a copy of the user's, over a connection pool of our own."""

from __future__ import annotations

from typing import Any

from stigg_cache._support import fork


class PooledCopy:
    """Holds ``_client``, a copy of the user's SDK client made by :meth:`_copy`.

    In a forked child the copy is made again (a pool of the child's own, never a
    socket the parent may be reading); the parent's copy is abandoned, not closed.
    """

    _client: Any

    def _open_copy(self) -> None:
        self._client = self._copy()
        fork.renew_after_fork(self, PooledCopy._reconnect)

    def _copy(self) -> Any:
        """The user's client with our settings and ``http_client=self._http_client()``."""
        raise NotImplementedError

    def _http_client(self) -> Any:
        """A new connection pool for :meth:`_copy` (sync or async, per adapter)."""
        raise NotImplementedError

    def _reconnect(self) -> None:
        fork.abandon(self._client)
        self._client = self._copy()
