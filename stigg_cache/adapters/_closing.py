"""An adapter closed while a call is under way is closed when that call returns.

httpcore's ``close()`` closes the connections in its pool, but not one a call
is still opening: the socket that ``connect()`` hands back a moment later
belongs to no pool any more and is left to the garbage collector (a
``ResourceWarning``, a file descriptor held until then). A client closed while
a background refresh was connecting (a worker restarting, a chaos run's
restart) did exactly that. Here ``close()`` never waits: a call hanging on a
blackholed Stigg ends at its own timeout, and closes the adapter as it returns.
A call that begins after ``close()`` is refused before it reaches the network: it
would open a connection on a client being closed, for an answer nobody keeps.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from stigg_cache._support import fork
from stigg_cache._support.log import logger
from stigg_cache.adapters._plans import knows_plans
from stigg_cache.adapters._stigg_json import UsageCounts
from stigg_cache.adapters.base import Adapter, described, reads_per_minute
from stigg_cache.errors import FailureKind, StiggUnavailableError
from stigg_cache.models import Snapshot


class ClosedAfterCalls:
    """``inner`` (an adapter this package built) with ``close()`` deferred past its calls."""

    def __init__(self, inner: Adapter) -> None:
        self.inner = inner
        self.name = inner.name
        # what the runtime reads of an adapter, as the inner one says it
        self.knows_plans = knows_plans(inner)
        self.reads_per_minute = reads_per_minute(inner)
        self.environment: str | None = getattr(inner, "environment", None)
        self._lock = threading.Lock()
        self._calls = 0
        self._closing = False  # close() was called
        self._closed = False  # inner.close() was called (once)
        fork.renew_after_fork(self, ClosedAfterCalls._renew)

    def _renew(self) -> None:
        """A child runs none of the parent's calls: none is under way here."""
        self._lock = threading.Lock()
        self._calls = 0

    @contextlib.contextmanager
    def _call(self) -> Iterator[None]:
        self._begin()
        try:
            yield
        finally:
            if self._end():
                self._close_inner()

    def _begin(self) -> None:
        """Count a call under way; refused once ``close()`` was called (so the count never
        grows again, and the call that brings it to zero is the last)."""
        with self._lock:
            if self._closing:
                raise StiggUnavailableError(FailureKind.CONNECTION, "client closed")
            self._calls += 1

    def _end(self) -> bool:
        """A call is over: whether it was the last one after ``close()``."""
        with self._lock:
            self._calls -= 1
            return self._closing and self._calls == 0

    def close(self) -> None:
        """Close the inner adapter now, or as its last call under way returns."""
        with self._lock:
            self._closing = True
            idle = self._calls == 0
        if idle:
            self._close_inner()

    def _close_inner(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        try:
            self.inner.close()
        except Exception as error:  # never the failure of the call it follows (a grant made)
            logger.warning(  # a string: a record holding the exception would keep its frames
                "stigg_cache.adapter_close_failed: %s: %s",
                self.name,
                described(error),
                extra={"event": "stigg_cache.adapter_close_failed"},
            )

    def fetch_entitlements(
        self, customer_id: str, resource_id: str | None, *, timeout_s: float
    ) -> Snapshot:
        with self._call():
            return self.inner.fetch_entitlements(customer_id, resource_id, timeout_s=timeout_s)

    def report_events(self, events: Sequence[Mapping[str, Any]], *, timeout_s: float) -> None:
        with self._call():
            self.inner.report_events(events, timeout_s=timeout_s)

    def report_usage(
        self, usages: Sequence[Mapping[str, Any]], *, timeout_s: float
    ) -> UsageCounts | None:
        with self._call():
            return self.inner.report_usage(usages, timeout_s=timeout_s)

    def grant_promotional_entitlements(
        self, customer_id: str, grants: Sequence[Mapping[str, Any]], *, timeout_s: float
    ) -> list[dict[str, Any]]:
        with self._call():
            return self.inner.grant_promotional_entitlements(
                customer_id, grants, timeout_s=timeout_s
            )

    def revoke_promotional_entitlement(
        self, customer_id: str, feature_id: str, *, timeout_s: float
    ) -> dict[str, Any]:
        with self._call():
            return self.inner.revoke_promotional_entitlement(
                customer_id, feature_id, timeout_s=timeout_s
            )

    def __repr__(self) -> str:
        return repr(self.inner)
