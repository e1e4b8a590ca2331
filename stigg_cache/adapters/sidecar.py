"""Adapter for the Stigg sidecar SDK (``pip install stigg-sidecar-sdk``).

An asyncio gRPC (grpclib) client of the sidecar container. Entitlements come
from ``GetEntitlementsStateV2``; events from ``ReportEvents``; usage from
``ReportUsageBulk``. The sidecar's ``ReportUsageRequest`` carries no
idempotency key, so usage sent through it is at-least-once: a batch whose
answer is lost is sent again and may count twice. Events keep their key:
prefer them with the sidecar. Promotions go through the SDK's ``.api``
(the GraphQL v2 async client it holds).

We call the sidecar through a channel of our own with the user's connection
settings: grpclib binds a channel to the event loop current when it is made.

An answer the sidecar built from its own fallback values (``is_fallback``)
is not Stigg's word: it is reported as unavailable, so our policy and stale
snapshots decide instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

from stigg_cache._support import fork
from stigg_cache.adapters import require
from stigg_cache.adapters._http import refuse_unsendable_headers
from stigg_cache.adapters._stigg_json import UsageCounts, parse_entitlements, usage_counts
from stigg_cache.adapters.base import FailureTable, failure_of, timed_out, unreachable
from stigg_cache.adapters.graphql_v2 import AsyncGraphQLV2Adapter, sent_headers
from stigg_cache.errors import (
    FailureKind,
    InvalidResponseError,
    StiggRejectedError,
    StiggUnavailableError,
)
from stigg_cache.models import Snapshot

_T = TypeVar("_T")
_PREFIXES = ("ACCESS_DENIED_REASON_", "FEATURE_TYPE_", "ENTITLEMENT_RESET_PERIOD_")
# gRPC statuses that sending the same request again will not change.
_REJECTING = frozenset(
    {
        "INVALID_ARGUMENT",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "FAILED_PRECONDITION",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
    }
)
_AUTH = frozenset({"UNAUTHENTICATED", "PERMISSION_DENIED"})  # the API key was refused


class SidecarAdapter:
    """``stigg_sidecar_sdk.Stigg`` behind the async adapter interface."""

    name = "stigg-sidecar"
    knows_plans = False  # the sidecar's protocol carries no plan, nor any subscription

    def __init__(self, inner: Any) -> None:
        refuse_unsendable_headers(sent_headers(inner.api), inner)
        self.inner = inner
        self._proto = require("stigg_sidecar_sdk", "stigg-sidecar-sdk", "sidecar")
        self._grpclib = require("grpclib.exceptions", "stigg-sidecar-sdk", "sidecar")
        grpclib = self._grpclib
        self._caught = (
            grpclib.GRPCError,
            OSError,
            grpclib.StreamTerminatedError,
            asyncio.IncompleteReadError,
        )
        self._failures: FailureTable = (
            (self._grpclib.GRPCError, _grpc_failure),
            (TimeoutError, timed_out("the sidecar timed out")),  # an OSError: above it
            (
                (OSError, self._grpclib.StreamTerminatedError, asyncio.IncompleteReadError),
                unreachable("the sidecar is unreachable"),
            ),
        )
        self._betterproto = require("betterproto", "stigg-sidecar-sdk", "sidecar")
        self._api: AsyncGraphQLV2Adapter | None = None
        self._grpc_client = require("grpclib.client", "stigg-sidecar-sdk", "sidecar")
        self._channel: Any = None
        self._sidecar: Any = None  # the stub over _channel
        fork.renew_after_fork(self, SidecarAdapter._reconnect)

    def _reconnect(self) -> None:
        """Channels of this process's own, opened on first use (never a parent's socket)."""
        fork.abandon(self._channel, self._sidecar, self._api)
        self._channel = self._sidecar = self._api = None

    async def fetch_entitlements(
        self, customer_id: str, resource_id: str | None, *, timeout_s: float
    ) -> Snapshot:
        request = self._proto.GetEntitlementsStateV2Request(
            customer_id=customer_id, resource_id=resource_id
        )
        stub = self._stub()
        answer = await self._guarded(
            lambda: stub.get_entitlements_state_v2(request, timeout=timeout_s)
        )
        items = [self._item(entitlement) for entitlement in answer.entitlements]
        data = {"entitlements": items, "accessDeniedReason": self._reason(answer)}
        try:
            return parse_entitlements(
                data, customer_id=customer_id, resource_id=resource_id, fetched_at=0.0
            )
        except InvalidResponseError as error:
            raise StiggUnavailableError(
                FailureKind.INVALID_RESPONSE, f"the sidecar's answer is unusable: {error}"
            ) from None

    async def report_events(self, events: Sequence[Mapping[str, Any]], *, timeout_s: float) -> None:
        proto = self._proto
        request = proto.ReportEventsRequest(
            events=[
                proto.Event(
                    event_name=event["eventName"],
                    customer_id=event["customerId"],
                    idempotency_key=event["idempotencyKey"],
                    resource_id=event.get("resourceId"),
                    dimensions=self._dimensions(event.get("dimensions")),
                    timestamp=_time(event.get("timestamp")),
                )
                for event in events
            ]
        )
        stub = self._stub()
        await self._guarded(lambda: stub.report_events(request, timeout=timeout_s))

    async def report_usage(
        self, usages: Sequence[Mapping[str, Any]], *, timeout_s: float
    ) -> UsageCounts:
        proto = self._proto
        behavior = proto.UsageUpdateBehavior
        request = proto.ReportUsageBulkRequest(
            usages=[
                proto.ReportUsageRequest(
                    customer_id=usage["customerId"],
                    resource_id=usage.get("resourceId"),
                    feature_id=usage["featureId"],
                    value=float(usage["value"]),
                    update_behavior=behavior.USAGE_UPDATE_BEHAVIOR_SET
                    if usage.get("updateBehavior") == "SET"
                    else behavior.USAGE_UPDATE_BEHAVIOR_DELTA,
                    dimensions=self._dimensions(usage.get("dimensions")),
                    timestamp=_time(usage.get("createdAt")),
                )
                for usage in usages
            ]
        )
        stub = self._stub()
        answer = await self._guarded(lambda: stub.report_usage_bulk(request, timeout=timeout_s))
        return usage_counts(
            [
                {
                    "customerId": usage.customer_id,
                    "resourceId": usage.resource_id,
                    "featureId": usage.feature_id,
                    "currentUsage": usage.current_usage,
                }
                for usage in answer.usages
            ]
        )

    async def grant_promotional_entitlements(
        self, customer_id: str, grants: Sequence[Mapping[str, Any]], *, timeout_s: float
    ) -> list[dict[str, Any]]:
        return await self._admin().grant_promotional_entitlements(
            customer_id, grants, timeout_s=timeout_s
        )

    async def revoke_promotional_entitlement(
        self, customer_id: str, feature_id: str, *, timeout_s: float
    ) -> dict[str, Any]:
        return await self._admin().revoke_promotional_entitlement(
            customer_id, feature_id, timeout_s=timeout_s
        )

    async def aclose(self) -> None:
        """Close what we opened; the user's sidecar client is theirs."""
        if self._channel is not None:
            self._channel.close()
        if self._api is not None:
            await self._api.aclose()

    def _stub(self) -> Any:
        """The sidecar's stub on a channel of our own, made on the loop we run on.

        grpclib binds a channel to the loop current when it is made: the user's
        may belong to a loop that is not running (made in sync code), so we
        open the same connection (host, port, TLS, settings) on ours.
        """
        if self._sidecar is None:  # no await between test and set: one channel per adapter
            theirs = self.inner.channel
            where = (
                {"path": theirs._path}
                if theirs._path is not None
                else {"host": theirs._host, "port": theirs._port}
            )
            self._channel = self._grpc_client.Channel(
                **where,
                codec=theirs._codec,
                status_details_codec=theirs._status_details_codec,
                ssl=theirs._ssl,
                config=theirs._config,
            )
            self._sidecar = self._proto.SidecarServiceStub(self._channel)
        return self._sidecar

    def _admin(self) -> AsyncGraphQLV2Adapter:
        """The GraphQL client the sidecar SDK holds, for what the sidecar does not serve."""
        if self._api is None:
            self._api = AsyncGraphQLV2Adapter(self.inner.api)
        return self._api

    def _item(self, entitlement: Any) -> dict[str, Any]:
        if entitlement.is_fallback:
            raise StiggUnavailableError(
                FailureKind.SERVER, "the sidecar answered from its fallback: Stigg is unreachable"
            )
        kind, body = self._betterproto.which_one_of(entitlement, "entitlement")
        if body is None:  # a kind newer than this SDK, or none at all
            raise StiggUnavailableError(
                FailureKind.INVALID_RESPONSE, "the sidecar sent an entitlement of no known kind"
            )
        item: dict[str, Any] = {
            "isGranted": entitlement.has_access,
            "accessDeniedReason": self._reason(entitlement),
        }
        if kind == "credit":
            return {
                **item,
                "type": "CREDIT",
                "currency": {
                    "currencyId": body.currency.currency_id,
                    "displayName": body.currency.display_name,
                },
                "usageLimit": body.usage_limit,
                "currentUsage": body.current_usage,
                "usagePeriodEnd": _iso(body.usage_period_end),
            }
        feature = body.feature
        item["feature"] = {
            "id": feature.id,
            "featureType": _name(self._proto.FeatureType, feature.feature_type),
        }
        if kind == "numeric":
            item.update(usageLimit=body.value, hasUnlimitedUsage=body.is_unlimited)
        elif kind == "metered":
            item.update(
                usageLimit=body.usage_limit,
                hasUnlimitedUsage=body.is_unlimited,
                currentUsage=body.current_usage,
                hasSoftLimit=body.has_soft_limit,
                resetPeriod=_name(self._proto.EntitlementResetPeriod, body.reset_period),
                usagePeriodAnchor=_iso(body.usage_period_anchor),
                usagePeriodStart=_iso(body.usage_period_start),
                usagePeriodEnd=_iso(body.usage_period_end),
            )
        elif kind == "enum":
            item["enumValues"] = list(body.enum_values)
        return {**item, "type": "FEATURE"}

    def _reason(self, message: Any) -> str | None:
        return _name(self._proto.AccessDeniedReason, message.access_denied_reason, camel=True)

    def _dimensions(self, dimensions: Mapping[str, Any] | None) -> dict[str, Any]:
        value_type = self._proto.EventDimensionValue
        converted: dict[str, Any] = {}
        for key, value in (dimensions or {}).items():
            if isinstance(value, bool):
                converted[key] = value_type(boolean_value=value)
            elif isinstance(value, int | float):
                converted[key] = value_type(number_value=float(value))
            else:
                converted[key] = value_type(string_value=str(value))
        return converted

    async def _guarded(self, call: Callable[[], Awaitable[_T]]) -> _T:
        try:
            return await call()
        except self._caught as error:
            failure = failure_of(error, self._failures)
            assert failure is not None  # a row for each exception caught
            raise failure from None

    def __repr__(self) -> str:
        channel = self.inner.channel
        return f"SidecarAdapter(host={channel._host!r}, port={channel._port!r})"


def _grpc_failure(error: Any) -> StiggUnavailableError:
    """A gRPC status from the sidecar: a refused key, a refused request, or its trouble."""
    status = error.status.name
    message = f"the sidecar answered {status}: {str(error.message)[:200]}"
    if status in _AUTH:
        return StiggRejectedError(FailureKind.AUTH, message)
    if status in _REJECTING:
        return StiggRejectedError(FailureKind.REJECTED, message)
    kind = FailureKind.RATE_LIMITED if status == "RESOURCE_EXHAUSTED" else FailureKind.SERVER
    return StiggUnavailableError(kind, message)


def _name(enum: Any, value: int | None, *, camel: bool = False) -> str | None:
    """A proto enum value as Stigg's JSON spells it (``BOOLEAN``, ``CustomerNotFound``).

    ``None`` for unset and for 0 (``*_UNSPECIFIED``); a value this SDK does not
    know is passed on as its number, for the parser to refuse.
    """
    if not value:
        return None
    try:
        name: str = enum(int(value)).name
    except ValueError:
        return str(value)
    for prefix in _PREFIXES:
        name = name.removeprefix(prefix)
    return "".join(word.capitalize() for word in name.split("_")) if camel else name


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _time(value: object) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else None
