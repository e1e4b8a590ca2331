"""The one interface every inner Stigg client is adapted to.

Failure rules: an adapter raises only
:class:`~stigg_cache.errors.StiggUnavailableError` (or its subclass
:class:`~stigg_cache.errors.StiggRejectedError` for a 4xx that retrying will
not fix) for anything that went wrong between us and Stigg, including bodies
that do not parse. It never retries on its own: the client owns the time
budget, and an SDK's built-in retries are switched off or cut short.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from stigg_cache.adapters._stigg_json import UsageCounts
from stigg_cache.errors import FailureKind, StiggRejectedError, StiggUnavailableError
from stigg_cache.models import Snapshot

MAX_RESPONSE_BYTES = 8 * 1024 * 1024  # a customer's entitlements are kilobytes; refuse floods
CONNECT_TIMEOUT_S = 2.0  # a loopback or regional connect takes milliseconds
MAX_SHOWN_CHARS = 300  # of an exception's text in a failure's message
# h11, http.client, requests and h2 refuse a header quoting its whole value: the API key.
_ABOUT_A_HEADER = re.compile("header", re.IGNORECASE)


def safe_text(error: BaseException) -> str:
    """An exception's text as a failure's message may show it: cut short, and never the
    value of a header (a text that speaks of a header is withheld whole)."""
    text = str(error)
    if _ABOUT_A_HEADER.search(text):
        return "a request header holds a character HTTP forbids (its value is not shown)"
    return text[:MAX_SHOWN_CHARS]


def described(error: BaseException) -> str:
    """An exception as a failure's message may show it: its type and :func:`safe_text`."""
    text = safe_text(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


# How one library's exceptions translate: rows (exception types, the failure it means),
# the first that matches wins (so a narrower type goes above a wider one).
FailureTable = Sequence[tuple[type[BaseException] | tuple[type[BaseException], ...], Any]]


def failure_of(error: BaseException, table: FailureTable) -> StiggUnavailableError | None:
    """The failure ``error`` means by the first row of ``table`` it matches; ``None`` if
    none does (a bug, to let through)."""
    for kinds, meaning in table:
        if isinstance(error, kinds):
            failure: StiggUnavailableError = meaning(error)
            return failure
    return None


def timed_out(message: str, *, with_error: bool = False) -> Any:
    """A table row's meaning: Stigg did not answer in time (``with_error``: the exception
    :func:`described` after ``message``)."""
    return lambda error: StiggUnavailableError(
        FailureKind.TIMEOUT, f"{message}: {described(error)}" if with_error else message
    )


def unreachable(message: str) -> Any:
    """A table row's meaning: no connection (the exception :func:`described` after it)."""
    return lambda error: StiggUnavailableError(
        FailureKind.CONNECTION, f"{message}: {described(error)}"
    )


def unusable(message: str) -> Any:
    """A table row's meaning: an answer that is not Stigg's (the exception follows)."""
    return lambda error: StiggUnavailableError(
        FailureKind.INVALID_RESPONSE, f"{message}: {safe_text(error)}"
    )


def unsendable(error: BaseException) -> StiggUnavailableError:
    """A table row's meaning: our request could not be made (a header or a URL that HTTP
    cannot carry). A configuration fault, neither Stigg's health nor a record's: AUTH, so
    usage is kept (sending paused) and the breaker is left alone."""
    return StiggRejectedError(
        FailureKind.AUTH,
        f"the request could not be made: {safe_text(error)}; "
        "check api_key, base_url and the inner client's headers",
    )


def as_failure(error: Exception) -> StiggUnavailableError:
    """What an exception out of an adapter call is taken for.

    A :class:`StiggUnavailableError` is itself. Anything else breaks the rules:
    a bug in an adapter (ours or a user's) must not strand a check or end the
    flusher, so it counts as an unusable answer, retried like one.
    """
    if isinstance(error, StiggUnavailableError):
        return error
    return StiggUnavailableError(
        FailureKind.INVALID_RESPONSE, f"adapter failed: {described(error)}"
    )


def reads_per_minute(adapter: object) -> float | None:
    """The read budget of the endpoint an adapter fetches from, per minute, if it has one.

    Stigg's Edge API allows 6,000 reads a minute per API key, shared by every
    reader of the account: an adapter reading from it says so with a
    ``reads_per_minute`` attribute, and fetches are paced to it (fleet-wide on
    a shared outbox). ``None``: no budget to keep.
    """
    budget = getattr(adapter, "reads_per_minute", None)
    return float(budget) if isinstance(budget, int | float) and budget > 0 else None


@runtime_checkable
class Adapter(Protocol):
    """What stigg-cache needs from a Stigg client."""

    name: str
    """Short name for ``status()`` and logs, e.g. ``stigg-rest``."""

    def fetch_entitlements(
        self, customer_id: str, resource_id: str | None, *, timeout_s: float
    ) -> Snapshot:
        """Every entitlement of a customer (or resource) from Stigg, and the plans of its
        active subscriptions (``plan_ids``), read under the same deadline. An adapter
        that cannot know plans says so with ``knows_plans = False``
        (:mod:`stigg_cache.adapters._plans`).

        ``fetched_at`` on the result is set by the caller; adapters may leave 0.
        """
        ...

    def report_events(self, events: Sequence[Mapping[str, Any]], *, timeout_s: float) -> None:
        """Send raw events (``POST /api/v1/events``), each in Stigg's wire shape."""
        ...

    def report_usage(
        self, usages: Sequence[Mapping[str, Any]], *, timeout_s: float
    ) -> UsageCounts | None:
        """Send usage measurements (``POST /api/v2/usage``), each in Stigg's wire shape.

        Returns Stigg's usage of each feature once it counted them (its answer's
        ``currentUsage``, see :func:`~stigg_cache.adapters._stigg_json.usage_counts`), or
        ``None`` when the client does not say: such usage settles by time alone.
        """
        ...

    def grant_promotional_entitlements(
        self, customer_id: str, grants: Sequence[Mapping[str, Any]], *, timeout_s: float
    ) -> list[dict[str, Any]]:
        """Grant promotional entitlements (snake_case fields, as the REST SDK takes them)."""
        ...

    def revoke_promotional_entitlement(
        self, customer_id: str, feature_id: str, *, timeout_s: float
    ) -> dict[str, Any]:
        """Revoke one promotional entitlement."""
        ...

    def close(self) -> None:
        """Release what the adapter opened itself (not the user's client)."""
        ...


@runtime_checkable
class AsyncAdapter(Protocol):
    """An asyncio Stigg client's side of the adapter interface (same rules, awaited).

    :class:`~stigg_cache.adapters.bridge.LoopBridge` puts one behind
    :class:`Adapter` by running its coroutines on an event loop.
    """

    name: str

    async def fetch_entitlements(
        self, customer_id: str, resource_id: str | None, *, timeout_s: float
    ) -> Snapshot: ...

    async def report_events(
        self, events: Sequence[Mapping[str, Any]], *, timeout_s: float
    ) -> None: ...

    async def report_usage(
        self, usages: Sequence[Mapping[str, Any]], *, timeout_s: float
    ) -> UsageCounts | None: ...

    async def grant_promotional_entitlements(
        self, customer_id: str, grants: Sequence[Mapping[str, Any]], *, timeout_s: float
    ) -> list[dict[str, Any]]: ...

    async def revoke_promotional_entitlement(
        self, customer_id: str, feature_id: str, *, timeout_s: float
    ) -> dict[str, Any]: ...

    async def aclose(self) -> None:
        """Release what the adapter opened itself (not the user's client)."""
        ...
