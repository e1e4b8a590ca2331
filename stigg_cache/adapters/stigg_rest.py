"""Adapter for the official REST SDK (``pip install stigg``: ``stigg.Stigg``).

The SDK defaults to a 60 s timeout and 2 retries; we take a copy of the
user's client with retries off and our own timeout, leaving theirs untouched.
Imported only when the user's client is a ``stigg.Stigg``, so the package
works without the SDK installed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import httpx
import stigg

from stigg_cache.adapters._http import failure_for_status, snake_case, snapshot_from_body
from stigg_cache.adapters.base import MAX_RESPONSE_BYTES
from stigg_cache.errors import FailureKind, StiggUnavailableError
from stigg_cache.models import Snapshot

CONNECT_TIMEOUT_S = 2.0  # a loopback or regional connect takes milliseconds


class StiggRestAdapter:
    """``stigg.Stigg`` (REST, Stainless-generated) behind the adapter interface."""

    name = "stigg-rest"

    def __init__(self, inner: Any, *, fetch_timeout_s: float) -> None:
        self.inner = inner
        self._client = inner.with_options(
            max_retries=0,
            timeout=httpx.Timeout(fetch_timeout_s, connect=min(fetch_timeout_s, CONNECT_TIMEOUT_S)),
        )

    def fetch_entitlements(
        self, customer_id: str, resource_id: str | None, *, timeout_s: float
    ) -> Snapshot:
        extra: dict[str, Any] = {} if resource_id is None else {"resource_id": resource_id}
        customers = self._client.v1.customers.with_raw_response
        raw = self._guarded(
            lambda: customers.retrieve_entitlements(customer_id, timeout=timeout_s, **extra)
        )
        body: bytes = raw.http_response.content
        if len(body) > MAX_RESPONSE_BYTES:
            raise StiggUnavailableError(
                FailureKind.INVALID_RESPONSE, f"Stigg's answer exceeds {MAX_RESPONSE_BYTES} bytes"
            )
        return snapshot_from_body(body, customer_id, resource_id)

    def report_events(self, events: Sequence[Mapping[str, Any]], *, timeout_s: float) -> None:
        params = [snake_case(event) for event in events]
        self._guarded(lambda: self._client.v1.events.report(events=params, timeout=timeout_s))

    def report_usage(self, usages: Sequence[Mapping[str, Any]], *, timeout_s: float) -> None:
        params = [snake_case(usage) for usage in usages]
        self._guarded(lambda: self._client.v2.usage.report(usages=params, timeout=timeout_s))

    def grant_promotional_entitlements(
        self, customer_id: str, grants: Sequence[Mapping[str, Any]], *, timeout_s: float
    ) -> list[dict[str, Any]]:
        promotions = self._client.v1.customers.promotional_entitlements
        result = self._guarded(
            lambda: promotions.create(
                customer_id, promotional_entitlements=list(grants), timeout=timeout_s
            )
        )
        return [item.model_dump(by_alias=True, mode="json") for item in result.data]

    def revoke_promotional_entitlement(
        self, customer_id: str, feature_id: str, *, timeout_s: float
    ) -> dict[str, Any]:
        promotions = self._client.v1.customers.promotional_entitlements
        result = self._guarded(
            lambda: promotions.revoke(feature_id, id=customer_id, timeout=timeout_s)
        )
        return dict(result.data.model_dump(by_alias=True, mode="json"))

    def close(self) -> None:
        """The user's client is theirs to close."""

    @staticmethod
    def _guarded(call: Callable[[], Any]) -> Any:
        try:
            return call()
        except stigg.StiggError as error:
            raise _translate(error) from None

    def __repr__(self) -> str:
        return f"StiggRestAdapter(base_url={str(self._client.base_url)!r})"


def _translate(error: Exception) -> StiggUnavailableError:
    if isinstance(error, stigg.APIStatusError):
        return failure_for_status(error.status_code, error.response.headers)
    if isinstance(error, stigg.APITimeoutError):
        return StiggUnavailableError(FailureKind.TIMEOUT, "Stigg timed out")
    if isinstance(error, stigg.APIConnectionError):
        cause = error.__cause__
        detail = f": {cause!r}" if cause else ""
        return StiggUnavailableError(FailureKind.CONNECTION, f"Stigg unreachable{detail}")
    return StiggUnavailableError(
        FailureKind.INVALID_RESPONSE, f"Stigg SDK error: {type(error).__name__}"
    )
