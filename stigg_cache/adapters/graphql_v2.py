"""Adapters for the GraphQL SDK (``pip install stigg-api-client-v2``): ``StiggClient``
and ``AsyncStiggClient``.

``Stigg.create_client`` builds its httpx client with a transport that
retries refused connections five times (7.5 s before a refused port is
reported); we work on a copy of the user's client, same URL, headers and
Edge settings, whose transport does not retry, and give every call the
caller's timeout (one deadline for the whole answer, decoded within the size
cap, and never a redirect: :mod:`stigg_cache.adapters._deadline`). The SDK's
tenacity retry re-reads the same response, so it sends nothing twice.
Entitlements come from ``get_entitlements_state`` (Edge
``entitlements-state.json`` when Edge is on, the GraphQL query otherwise), the
customer's plans from ``get_active_subscriptions_list`` (Edge or GraphQL alike);
usage from ``report_usage_bulk`` and ``report_event``.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

import attrs
import httpx

from stigg_cache.adapters import require
from stigg_cache.adapters._copy import PooledCopy
from stigg_cache.adapters._deadline import (
    HTTPX_FAILURES,
    AsyncDeadlineTransport,
    DeadlineTransport,
    call_timeout,
)
from stigg_cache.adapters._graphql import (
    failure_for_errors,
    fetch_query,
    grant_input,
    snapshot_from_state,
)
from stigg_cache.adapters._http import failure_for_status, refuse_unsendable_headers
from stigg_cache.adapters._plans import (
    EDGE_READS_PER_FETCH,
    graphql_input,
    plans_of_graphql,
    subscribed,
    time_left,
)
from stigg_cache.adapters._stigg_json import UsageCounts, usage_counts
from stigg_cache.adapters.base import FailureTable, failure_of, unusable
from stigg_cache.core.pacing import EDGE_READS_PER_MINUTE
from stigg_cache.errors import StiggUnavailableError
from stigg_cache.models import Snapshot

_T = TypeVar("_T")


def sent_headers(inner: Any) -> list[tuple[Any, Any]]:
    """The headers a client of the SDK sends: its own and its httpx client's."""
    return [*(inner.headers or {}).items(), *inner.http_client.headers.raw]


class _V2Calls(PooledCopy):
    """What the sync and async adapters share: inputs, answers and errors."""

    def __init__(self, inner: Any) -> None:
        refuse_unsendable_headers(sent_headers(inner), inner)
        self.inner = inner
        edge = getattr(inner, "enable_edge", False) is True
        # With Edge on, a fetch is two Edge reads (the state and the subscriptions).
        self.reads_per_minute = EDGE_READS_PER_MINUTE / EDGE_READS_PER_FETCH if edge else None
        self._generated = require("stigg.generated", "stigg-api-client-v2", "graphql-v2")
        exceptions = require("stigg.generated.exceptions", "stigg-api-client-v2", "graphql-v2")
        pydantic = require("pydantic", "stigg-api-client-v2", "graphql-v2")
        self._failures: FailureTable = (
            (
                exceptions.GraphQLClientHttpError,
                lambda e: failure_for_status(e.status_code, e.response.headers),
            ),
            (
                exceptions.GraphQLClientGraphQLMultiError,
                lambda e: failure_for_errors(
                    [x.orginal or {"message": x.message} for x in e.errors]
                ),
            ),
            (
                (exceptions.GraphQLClientError, pydantic.ValidationError),
                unusable("Stigg's answer is unusable"),
            ),
            *HTTPX_FAILURES,
        )
        self._open_copy()

    def _copy(self) -> Any:
        """The user's client (URL, headers, Edge settings) over a pool of our own."""
        inner = self.inner
        return type(inner)(
            enable_edge=inner.enable_edge,
            edge_api_url=inner.edge_api_url,
            url=inner.url,
            headers=inner.headers,
            http_client=self._http_client(),
        )

    def _state_query(self, customer_id: str, resource_id: str | None) -> Any:
        return self._generated.FetchEntitlementsQuery.model_validate(
            fetch_query(customer_id, resource_id)
        )

    def _subscriptions_input(self, customer_id: str, resource_id: str | None) -> Any:
        return self._generated.GetActiveSubscriptionsInput.model_validate(
            graphql_input(customer_id, resource_id)
        )

    @staticmethod
    def _with_plans(snapshot: Snapshot, result: Any) -> Snapshot:
        data = result.model_dump(by_alias=True, mode="json")
        return attrs.evolve(snapshot, plan_ids=plans_of_graphql(data))

    @staticmethod
    def _counted(result: Any) -> UsageCounts:
        return usage_counts(result.model_dump(by_alias=True, mode="json").get("reportUsageBulk"))

    def _usage_input(self, usages: Sequence[Mapping[str, Any]]) -> Any:
        return self._generated.ReportUsageBulkInput.model_validate({"usages": list(usages)})

    def _events_input(self, events: Sequence[Mapping[str, Any]]) -> Any:
        return self._generated.UsageEventsReportInput.model_validate({"usageEvents": list(events)})

    def _grant_input(self, customer_id: str, grants: Sequence[Mapping[str, Any]]) -> Any:
        return self._generated.GrantPromotionalEntitlementsInput.model_validate(
            grant_input(customer_id, grants)
        )

    def _revoke_input(self, customer_id: str, feature_id: str) -> Any:
        return self._generated.RevokePromotionalEntitlementInput.model_validate(
            {"customerId": customer_id, "featureId": feature_id}
        )

    @staticmethod
    def _snapshot(result: Any, customer_id: str, resource_id: str | None) -> Snapshot:
        state = result.entitlements_state.model_dump(by_alias=True, mode="json")
        return snapshot_from_state(state, customer_id, resource_id)

    @staticmethod
    def _granted(result: Any) -> list[dict[str, Any]]:
        return [
            item.model_dump(by_alias=True, mode="json")
            for item in result.grant_promotional_entitlements
        ]

    @staticmethod
    def _revoked(result: Any) -> dict[str, Any]:
        return dict(result.revoke_promotional_entitlement.model_dump(by_alias=True, mode="json"))

    def _translate(self, error: Exception) -> StiggUnavailableError | None:
        """The failure an SDK exception means; ``None`` for a bug to let through."""
        return failure_of(error, self._failures)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(api_url={self.inner.url!r})"


class GraphQLV2Adapter(_V2Calls):
    """``stigg.StiggClient`` of ``stigg-api-client-v2`` behind the adapter interface."""

    name = "stigg-graphql-v2"

    def _http_client(self) -> httpx.Client:
        return httpx.Client(headers=self.inner.http_client.headers, transport=DeadlineTransport())

    def fetch_entitlements(
        self, customer_id: str, resource_id: str | None, *, timeout_s: float
    ) -> Snapshot:
        deadline = time.monotonic() + timeout_s
        query = self._state_query(customer_id, resource_id)
        call = self._client.get_entitlements_state
        result = self._guarded(lambda: call(query, timeout=call_timeout(timeout_s)))
        snapshot = self._snapshot(result, customer_id, resource_id)
        if not subscribed(snapshot):
            return snapshot
        wanted = self._subscriptions_input(customer_id, resource_id)
        listing = self._client.get_active_subscriptions_list
        left = call_timeout(time_left(deadline))
        return self._with_plans(snapshot, self._guarded(lambda: listing(wanted, timeout=left)))

    def report_events(self, events: Sequence[Mapping[str, Any]], *, timeout_s: float) -> None:
        payload = self._events_input(events)
        call = self._client.report_event
        self._guarded(lambda: call(payload, timeout=call_timeout(timeout_s)))

    def report_usage(self, usages: Sequence[Mapping[str, Any]], *, timeout_s: float) -> UsageCounts:
        payload = self._usage_input(usages)
        call = self._client.report_usage_bulk
        return self._counted(self._guarded(lambda: call(payload, timeout=call_timeout(timeout_s))))

    def grant_promotional_entitlements(
        self, customer_id: str, grants: Sequence[Mapping[str, Any]], *, timeout_s: float
    ) -> list[dict[str, Any]]:
        payload = self._grant_input(customer_id, grants)
        call = self._client.grant_promotional_entitlements
        return self._granted(self._guarded(lambda: call(payload, timeout=call_timeout(timeout_s))))

    def revoke_promotional_entitlement(
        self, customer_id: str, feature_id: str, *, timeout_s: float
    ) -> dict[str, Any]:
        payload = self._revoke_input(customer_id, feature_id)
        call = self._client.revoke_promotional_entitlement
        return self._revoked(self._guarded(lambda: call(payload, timeout=call_timeout(timeout_s))))

    def close(self) -> None:
        """Close our copy's connections (the user's client is theirs)."""
        self._client.http_client.close()

    def _guarded(self, call: Callable[[], _T]) -> _T:
        try:
            return call()
        except Exception as error:
            failure = self._translate(error)
            if failure is None:
                raise
            raise failure from None


class AsyncGraphQLV2Adapter(_V2Calls):
    """``stigg.AsyncStiggClient`` of ``stigg-api-client-v2`` behind the async adapter interface."""

    name = "stigg-graphql-v2-async"

    def _http_client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            headers=self.inner.http_client.headers, transport=AsyncDeadlineTransport()
        )

    async def fetch_entitlements(
        self, customer_id: str, resource_id: str | None, *, timeout_s: float
    ) -> Snapshot:
        deadline = time.monotonic() + timeout_s
        query = self._state_query(customer_id, resource_id)
        call = self._client.get_entitlements_state
        result = await self._guarded(lambda: call(query, timeout=call_timeout(timeout_s)))
        snapshot = self._snapshot(result, customer_id, resource_id)
        if not subscribed(snapshot):
            return snapshot
        wanted = self._subscriptions_input(customer_id, resource_id)
        listing = self._client.get_active_subscriptions_list
        left = call_timeout(time_left(deadline))
        listed = await self._guarded(lambda: listing(wanted, timeout=left))
        return self._with_plans(snapshot, listed)

    async def report_events(self, events: Sequence[Mapping[str, Any]], *, timeout_s: float) -> None:
        payload = self._events_input(events)
        call = self._client.report_event
        await self._guarded(lambda: call(payload, timeout=call_timeout(timeout_s)))

    async def report_usage(
        self, usages: Sequence[Mapping[str, Any]], *, timeout_s: float
    ) -> UsageCounts:
        payload = self._usage_input(usages)
        call = self._client.report_usage_bulk
        result = await self._guarded(lambda: call(payload, timeout=call_timeout(timeout_s)))
        return self._counted(result)

    async def grant_promotional_entitlements(
        self, customer_id: str, grants: Sequence[Mapping[str, Any]], *, timeout_s: float
    ) -> list[dict[str, Any]]:
        payload = self._grant_input(customer_id, grants)
        call = self._client.grant_promotional_entitlements
        result = await self._guarded(lambda: call(payload, timeout=call_timeout(timeout_s)))
        return self._granted(result)

    async def revoke_promotional_entitlement(
        self, customer_id: str, feature_id: str, *, timeout_s: float
    ) -> dict[str, Any]:
        payload = self._revoke_input(customer_id, feature_id)
        call = self._client.revoke_promotional_entitlement
        result = await self._guarded(lambda: call(payload, timeout=call_timeout(timeout_s)))
        return self._revoked(result)

    async def aclose(self) -> None:
        """Close our copy's connections (the user's client is theirs)."""
        await self._client.http_client.aclose()

    async def _guarded(self, call: Callable[[], Awaitable[_T]]) -> _T:
        try:
            return await call()
        except Exception as error:
            failure = self._translate(error)
            if failure is None:
                raise
            raise failure from None
