"""Adapters for the official REST SDK (``pip install stigg``): ``Stigg`` and ``AsyncStigg``.

The SDK defaults to a 60 s timeout and 2 retries; we take a copy of the
user's client with retries off and our own timeout, leaving theirs untouched.
Imported only when the user's client is one of these, so the package works
without the SDK installed.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

import attrs
import httpx
import stigg

from stigg_cache.adapters._copy import PooledCopy
from stigg_cache.adapters._deadline import (
    HTTPX_FAILURES,
    AsyncDeadlineTransport,
    DeadlineTransport,
    call_timeout,
)
from stigg_cache.adapters._http import (
    failure_for_status,
    refuse_unsendable_headers,
    snake_case,
    snapshot_from_body,
)
from stigg_cache.adapters._plans import plans_of_rest_body, rest_query, subscribed, time_left
from stigg_cache.adapters._stigg_json import UsageCounts, usage_counts
from stigg_cache.adapters.base import (
    FailureTable,
    failure_of,
    timed_out,
    unreachable,
    unusable,
)
from stigg_cache.errors import StiggUnavailableError
from stigg_cache.models import Snapshot

_T = TypeVar("_T")


class _RestCalls(PooledCopy):
    """What the sync and async adapters share: the copy, the calls' arguments, the answers."""

    def __init__(self, inner: Any, *, fetch_timeout_s: float) -> None:
        refuse_unsendable_headers(inner.default_headers.items(), inner)
        self.inner = inner
        self._fetch_timeout_s = fetch_timeout_s
        self._open_copy()
        # The SDK imports its resources on first use (0.2-0.4 s of pydantic classes): here,
        # at start-up, not inside the first check's budget (which it used to miss).
        _ = (self._client.v1.customers, self._client.v1.events, self._client.v2.usage)

    def _copy(self) -> Any:
        """The user's client with retries off, our timeout and a pool of our own."""
        return self.inner.with_options(
            max_retries=0,
            timeout=call_timeout(self._fetch_timeout_s),
            http_client=self._http_client(),
        )

    def _entitlements_call(
        self, customer_id: str, resource_id: str | None, timeout_s: float
    ) -> Any:
        extra: dict[str, Any] = {} if resource_id is None else {"resource_id": resource_id}
        customers = self._client.v1.customers.with_raw_response
        return customers.retrieve_entitlements(customer_id, timeout=timeout_s, **extra)

    def _subscriptions_call(
        self, customer_id: str, resource_id: str | None, timeout_s: float
    ) -> Any:
        query = rest_query(customer_id, resource_id)
        extra: dict[str, Any] = {} if resource_id is None else {"resource_id": resource_id}
        subscriptions = self._client.v1.subscriptions.with_raw_response
        return subscriptions.list(
            customer_id=customer_id,
            status=query["status"].split(","),
            limit=query["limit"],
            timeout=timeout_s,
            **extra,
        )

    def _events_call(self, events: Sequence[Mapping[str, Any]], timeout_s: float) -> Any:
        params = [snake_case(event) for event in events]
        return self._client.v1.events.report(events=params, timeout=timeout_s)

    def _usage_call(self, usages: Sequence[Mapping[str, Any]], timeout_s: float) -> Any:
        params = [snake_case(usage) for usage in usages]
        return self._client.v2.usage.report(usages=params, timeout=timeout_s)

    def _grant_call(
        self, customer_id: str, grants: Sequence[Mapping[str, Any]], timeout_s: float
    ) -> Any:
        promotions = self._client.v1.customers.promotional_entitlements
        return promotions.create(
            customer_id, promotional_entitlements=list(grants), timeout=timeout_s
        )

    def _revoke_call(self, customer_id: str, feature_id: str, timeout_s: float) -> Any:
        promotions = self._client.v1.customers.promotional_entitlements
        return promotions.revoke(feature_id, id=customer_id, timeout=timeout_s)

    @staticmethod
    def _granted(result: Any) -> list[dict[str, Any]]:
        return [item.model_dump(by_alias=True, mode="json") for item in result.data]

    @staticmethod
    def _counted(result: Any) -> UsageCounts:
        data = result.data.model_dump(by_alias=True, mode="json")
        return usage_counts(data.get("usages"))

    @staticmethod
    def _revoked(result: Any) -> dict[str, Any]:
        return dict(result.data.model_dump(by_alias=True, mode="json"))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={str(self._client.base_url)!r})"


class StiggRestAdapter(_RestCalls):
    """``stigg.Stigg`` (REST, Stainless-generated) behind the adapter interface.

    The copy reads every answer whole within the call's timeout (a trickled
    body would beat the SDK's per-read timeout), over a pool of its own.
    """

    name = "stigg-rest"

    def _http_client(self) -> httpx.Client:
        return httpx.Client(transport=DeadlineTransport())

    def fetch_entitlements(
        self, customer_id: str, resource_id: str | None, *, timeout_s: float
    ) -> Snapshot:
        deadline = time.monotonic() + timeout_s
        raw = _guarded(lambda: self._entitlements_call(customer_id, resource_id, timeout_s))
        snapshot = snapshot_from_body(raw.http_response.content, customer_id, resource_id)
        if not subscribed(snapshot):
            return snapshot
        left = time_left(deadline)
        listed = _guarded(lambda: self._subscriptions_call(customer_id, resource_id, left))
        return attrs.evolve(snapshot, plan_ids=plans_of_rest_body(listed.http_response.content))

    def report_events(self, events: Sequence[Mapping[str, Any]], *, timeout_s: float) -> None:
        _guarded(lambda: self._events_call(events, timeout_s))

    def report_usage(self, usages: Sequence[Mapping[str, Any]], *, timeout_s: float) -> UsageCounts:
        return self._counted(_guarded(lambda: self._usage_call(usages, timeout_s)))

    def grant_promotional_entitlements(
        self, customer_id: str, grants: Sequence[Mapping[str, Any]], *, timeout_s: float
    ) -> list[dict[str, Any]]:
        return self._granted(_guarded(lambda: self._grant_call(customer_id, grants, timeout_s)))

    def revoke_promotional_entitlement(
        self, customer_id: str, feature_id: str, *, timeout_s: float
    ) -> dict[str, Any]:
        return self._revoked(
            _guarded(lambda: self._revoke_call(customer_id, feature_id, timeout_s))
        )

    def close(self) -> None:
        """Close our copy's connections (the user's client is theirs)."""
        self._client.close()


class AsyncStiggRestAdapter(_RestCalls):
    """``stigg.AsyncStigg`` behind the async adapter interface.

    The copy gets a connection pool of its own, closed with the adapter: its
    connections belong to the loop the adapter runs on, which may be a
    private one the user's client never sees. Its answers are read within the
    size cap, as the blocking adapter's.
    """

    name = "stigg-rest-async"

    def _http_client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=AsyncDeadlineTransport())

    async def fetch_entitlements(
        self, customer_id: str, resource_id: str | None, *, timeout_s: float
    ) -> Snapshot:
        deadline = time.monotonic() + timeout_s
        raw = await _awaited(lambda: self._entitlements_call(customer_id, resource_id, timeout_s))
        snapshot = snapshot_from_body(await _awaited(raw.read), customer_id, resource_id)
        if not subscribed(snapshot):
            return snapshot
        left = time_left(deadline)
        listed = await _awaited(lambda: self._subscriptions_call(customer_id, resource_id, left))
        plan_ids = plans_of_rest_body(await _awaited(listed.read))
        return attrs.evolve(snapshot, plan_ids=plan_ids)

    async def report_events(self, events: Sequence[Mapping[str, Any]], *, timeout_s: float) -> None:
        await _awaited(lambda: self._events_call(events, timeout_s))

    async def report_usage(
        self, usages: Sequence[Mapping[str, Any]], *, timeout_s: float
    ) -> UsageCounts:
        return self._counted(await _awaited(lambda: self._usage_call(usages, timeout_s)))

    async def grant_promotional_entitlements(
        self, customer_id: str, grants: Sequence[Mapping[str, Any]], *, timeout_s: float
    ) -> list[dict[str, Any]]:
        result = await _awaited(lambda: self._grant_call(customer_id, grants, timeout_s))
        return self._granted(result)

    async def revoke_promotional_entitlement(
        self, customer_id: str, feature_id: str, *, timeout_s: float
    ) -> dict[str, Any]:
        result = await _awaited(lambda: self._revoke_call(customer_id, feature_id, timeout_s))
        return self._revoked(result)

    async def aclose(self) -> None:
        """Close our copy's connections (the user's client is theirs)."""
        await self._client.close()


def _guarded(call: Callable[[], _T]) -> _T:
    try:
        return call()
    except (stigg.StiggError, ValueError) as error:
        raise _failure(error) from None


async def _awaited(call: Callable[[], Awaitable[_T]]) -> _T:
    try:
        return await call()
    except (stigg.StiggError, ValueError) as error:
        raise _failure(error) from None


_unreachable = unreachable("Stigg unreachable")
_unusable = unusable("Stigg's answer is unusable")
_FAILURES: FailureTable = (
    (stigg.APIStatusError, lambda e: failure_for_status(e.status_code, e.response.headers)),
    (stigg.APITimeoutError, timed_out("Stigg timed out")),
    # What our transport refused (a bomb, a redirect) is the cause of a connection error.
    (
        stigg.APIConnectionError,
        lambda e: (
            e.__cause__
            if isinstance(e.__cause__, StiggUnavailableError)
            else _unreachable(e.__cause__ or e)
        ),
    ),
    # The SDK lets a 2xx body that is not JSON (or not its model) out as ValueError.
    ((stigg.StiggError, ValueError), lambda e: _unusable(type(e).__name__)),
)


def _connection_failure(cause: BaseException) -> StiggUnavailableError:
    """What the cause of the SDK's ``APIConnectionError`` means: a refusal of our transport
    (a bomb, a redirect) as it is, httpx's errors by their table."""
    if isinstance(cause, StiggUnavailableError):
        return cause
    return failure_of(cause, HTTPX_FAILURES) or _unreachable(cause)


def _failure(error: Exception) -> StiggUnavailableError:
    failure = failure_of(error, _FAILURES)
    assert failure is not None  # the last row takes every exception caught
    return failure
