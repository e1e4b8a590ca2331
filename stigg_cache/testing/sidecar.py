"""A fake Stigg sidecar: the sidecar SDK's own generated gRPC service on loopback.

It serves a :class:`~stigg_cache.testing.account.FakeAccount` (the same one a
:class:`~stigg_cache.testing.fake.FakeStigg` serves over HTTP) through
``SidecarServiceBase`` on a grpclib server running its own event loop on a
daemon thread. Modes: UP answers, BLACKHOLE holds every call until the mode
changes (at most ``MAX_HANG_S``), ERROR_5XX answers UNAVAILABLE,
RATE_LIMITED answers RESOURCE_EXHAUSTED, DOWN closes the port. Needs the
``[sidecar]`` extra.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from stigg_cache.adapters import require
from stigg_cache.testing._closing import Closing
from stigg_cache.testing.account import Answer, FakeAccount
from stigg_cache.testing.fake import LOOPBACK, MAX_HANG_S, FakeMode

_START_TIMEOUT_S = 10.0
_MODES = (FakeMode.UP, FakeMode.BLACKHOLE, FakeMode.DOWN, FakeMode.ERROR_5XX, FakeMode.RATE_LIMITED)


class FakeSidecar(Closing):
    """A fake sidecar on 127.0.0.1 (port chosen by the OS unless given).

    Attributes:
        calls: every RPC received, by name, in arrival order.
        from_fallback: answer as a sidecar cut off from Stigg with nothing
            cached does: its configured fallback values (here: ``sso``
            denied) marked ``is_fallback``, whoever the customer.
    """

    def __init__(self, account: FakeAccount, *, port: int = 0) -> None:
        self.account = account
        self.calls: list[str] = []
        self.from_fallback = False
        self._proto = require("stigg_sidecar_sdk", "stigg-sidecar-sdk", "sidecar")
        self._grpc_server = require("grpclib.server", "stigg-sidecar-sdk", "sidecar")
        self._grpc = require("grpclib", "stigg-sidecar-sdk", "sidecar")
        self._mode = FakeMode.UP
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, daemon=True, name="fake-sidecar"
        )
        self._thread.start()
        self._release = self._call(self._new_event())
        self._server: Any = None
        self._protocols: list[Any] = []
        self._port = port
        self._call(self._listen())

    @property
    def host(self) -> str:
        """Give this to the SDK as ``remote_sidecar_host``."""
        return LOOPBACK

    @property
    def port(self) -> int:
        """Give this to the SDK as ``remote_sidecar_port``."""
        return self._port

    def set_mode(self, mode: FakeMode) -> None:
        """UP, BLACKHOLE or DOWN; held calls are released, the port opens or closes."""
        if mode not in _MODES:
            raise ValueError(f"the fake sidecar has no {mode.name} mode")
        old, self._mode = self._mode, mode
        self._loop.call_soon_threadsafe(self._release.set)
        self._release = self._call(self._new_event())
        if mode is FakeMode.DOWN and old is not FakeMode.DOWN:
            self._call(self._stop_listening())
        elif old is FakeMode.DOWN and mode is not FakeMode.DOWN:
            self._call(self._listen())

    def close(self) -> None:
        """Stop serving, release held calls and end the loop thread."""
        if self._loop.is_closed():
            return
        self._loop.call_soon_threadsafe(self._release.set)
        self._call(self._stop_listening())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(_START_TIMEOUT_S)
        self._loop.close()

    # -- serving (on the fake's loop) ------------------------------------------------

    async def _new_event(self) -> asyncio.Event:
        return asyncio.Event()

    async def _listen(self) -> None:
        server = self._grpc_server.Server([_service(self)])
        make_protocol = server._protocol_factory

        def tracked() -> Any:  # grpclib closes no connection on close(): DOWN must drop them
            protocol = make_protocol()
            self._protocols.append(protocol)
            return protocol

        server._protocol_factory = tracked
        await server.start(LOOPBACK, self._port)
        self._port = server._server.sockets[0].getsockname()[1]
        self._server = server

    async def _stop_listening(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            await server.wait_closed()
        protocols, self._protocols = self._protocols, []
        for protocol in protocols:
            connection = getattr(protocol, "connection", None)
            if connection is not None:
                connection.close()

    async def gate(self, name: str) -> None:
        """Record a call; hold it while blackholed, refuse it in ERROR_5XX and RATE_LIMITED."""
        self.calls.append(name)
        status = self._grpc.const.Status
        if self._mode is FakeMode.ERROR_5XX:
            raise self._grpc.GRPCError(status.UNAVAILABLE, "Service Unavailable")
        if self._mode is FakeMode.RATE_LIMITED:
            raise self._grpc.GRPCError(status.RESOURCE_EXHAUSTED, "Too Many Requests")
        if self._mode is FakeMode.BLACKHOLE:
            release = self._release
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(release.wait(), MAX_HANG_S)
            raise self._grpc.GRPCError(status.UNAVAILABLE, "blackholed")

    def refusal(self, answer: Answer) -> Exception | None:
        """The gRPC error for an account's refusal, ``None`` when it accepted."""
        status, _, body = answer
        if status == 200:
            return None
        codes = self._grpc.const.Status
        code = codes.RESOURCE_EXHAUSTED if status == 429 else codes.INVALID_ARGUMENT
        error: Exception = self._grpc.GRPCError(code, body.decode()[:200])
        return error

    def _call(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(_START_TIMEOUT_S)


def _service(fake: FakeSidecar) -> Any:
    """A ``SidecarServiceBase`` over the fake's account (built here: the base is the SDK's)."""
    proto = fake._proto
    account = fake.account

    class Service(proto.SidecarServiceBase):  # type: ignore[misc, name-defined]
        async def get_entitlements_state_v2(self, request: Any) -> Any:
            await fake.gate("GetEntitlementsStateV2")
            if fake.from_fallback:
                return proto.GetEntitlementsStateV2Response(entitlements=[_fallback_answer(proto)])
            data = account.entitlements(request.customer_id, request.resource_id)
            reason = data["accessDeniedReason"]
            entitlements = [_entitlement(proto, item) for item in data["entitlements"]]
            return proto.GetEntitlementsStateV2Response(
                entitlements=entitlements,
                access_denied_reason=None if reason is None else _reason(proto, reason),
            )

        async def report_events(self, request: Any) -> Any:
            await fake.gate("ReportEvents")
            events = [_event(event) for event in request.events]
            refused = fake.refusal(account.report_events({"events": events}))
            if refused is not None:
                raise refused
            return require("betterproto.lib.google.protobuf", "betterproto", "sidecar").Empty()

        async def report_usage_bulk(self, request: Any) -> Any:
            await fake.gate("ReportUsageBulk")
            usages = [_usage(proto, usage) for usage in request.usages]
            answer = account.report_usage({"usages": usages})
            refused = fake.refusal(answer)
            if refused is not None:
                raise refused
            counted = json.loads(answer[2])["data"]["usages"]
            return proto.ReportUsageBulkResponse(
                usages=[
                    proto.ReportUsageResponse(
                        measurement_id=usage.get("idempotencyKey") or "",
                        customer_id=usage["customerId"],
                        resource_id=usage.get("resourceId"),
                        feature_id=usage["featureId"],
                        current_usage=item["currentUsage"],
                    )
                    for usage, item in zip(usages, counted, strict=True)
                ]
            )

    return Service()


def _fallback_answer(proto: Any) -> Any:
    feature = proto.EntitlementFeature(
        id="sso", feature_type=proto.FeatureType.FEATURE_TYPE_BOOLEAN
    )
    boolean = proto.BooleanEntitlement(feature=feature)
    return proto.EntitlementV2(has_access=False, is_fallback=True, boolean=boolean)


def _time(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _reason(proto: Any, reason: str) -> Any:
    snake = "".join(f"_{c}" if c.isupper() else c.upper() for c in reason).lstrip("_")
    return proto.AccessDeniedReason[f"ACCESS_DENIED_REASON_{snake}"]


def _entitlement(proto: Any, item: Mapping[str, Any]) -> Any:
    """A REST-shaped entitlement of the account as the sidecar's ``EntitlementV2``."""
    reason = item.get("accessDeniedReason")
    common = {
        "has_access": item["isGranted"],
        "access_denied_reason": None if reason is None else _reason(proto, reason),
    }
    if item["type"] == "CREDIT":
        return proto.EntitlementV2(**common, credit=_credit(proto, item))
    kind = item["feature"].get("featureType") or "BOOLEAN"
    metered = kind == "NUMBER" and item.get("currentUsage") is not None
    feature = proto.EntitlementFeature(
        id=item["feature"]["id"],
        feature_type=proto.FeatureType[f"FEATURE_TYPE_{kind}"],
        is_metered=metered,
    )
    if kind == "ENUM":
        body = {"enum": proto.EnumEntitlement(feature=feature, enum_values=item["enumValues"])}
    elif metered:
        body = {"metered": _metered(proto, feature, item)}
    elif kind == "NUMBER":
        limit = item.get("usageLimit")
        body = {
            "numeric": proto.NumericEntitlement(
                feature=feature,
                value=None if limit is None else int(limit),
                is_unlimited=bool(item.get("hasUnlimitedUsage")),
            )
        }
    else:
        body = {"boolean": proto.BooleanEntitlement(feature=feature)}
    return proto.EntitlementV2(**common, **body)


def _credit(proto: Any, item: Mapping[str, Any]) -> Any:
    currency = item["currency"]
    limit, used = item.get("usageLimit") or 0.0, item.get("currentUsage") or 0.0
    return proto.CreditEntitlement(
        currency=proto.EntitlementCurrency(
            currency_id=currency["currencyId"], display_name=currency.get("displayName") or ""
        ),
        usage_limit=limit,
        current_usage=used,
        remaining=limit - used,
        usage_period_end=_time(item.get("usagePeriodEnd")),
    )


def _metered(proto: Any, feature: Any, item: Mapping[str, Any]) -> Any:
    period = item.get("resetPeriod")
    return proto.MeteredEntitlement(
        feature=feature,
        usage_limit=item.get("usageLimit"),
        is_unlimited=bool(item.get("hasUnlimitedUsage")),
        current_usage=item["currentUsage"],
        has_soft_limit=bool(item.get("hasSoftLimit")),
        reset_period=None
        if period is None
        else proto.EntitlementResetPeriod[f"ENTITLEMENT_RESET_PERIOD_{period}"],
        usage_period_anchor=_time(item.get("usagePeriodAnchor")),
        usage_period_start=_time(item.get("usagePeriodStart")),
        usage_period_end=_time(item.get("usagePeriodEnd")),
    )


def _dimensions(message: Any) -> dict[str, Any]:
    betterproto = require("betterproto", "betterproto", "sidecar")
    return {key: betterproto.which_one_of(value, "value")[1] for key, value in message.items()}


def _event(event: Any) -> dict[str, Any]:
    return {
        "customerId": event.customer_id,
        "eventName": event.event_name,
        "idempotencyKey": event.idempotency_key,
        "resourceId": event.resource_id,
        "dimensions": _dimensions(event.dimensions),
        "timestamp": None if event.timestamp is None else event.timestamp.isoformat(),
    }


def _usage(proto: Any, usage: Any) -> dict[str, Any]:
    behavior = usage.update_behavior
    return {
        "customerId": usage.customer_id,
        "featureId": usage.feature_id,
        "value": usage.value,
        "resourceId": usage.resource_id,
        "updateBehavior": "SET"
        if behavior == proto.UsageUpdateBehavior.USAGE_UPDATE_BEHAVIOR_SET
        else "DELTA",
        "dimensions": _dimensions(usage.dimensions),
        "createdAt": None if usage.timestamp is None else usage.timestamp.isoformat(),
    }
