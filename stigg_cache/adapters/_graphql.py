"""What the GraphQL adapters (v1 and v2 SDKs) share: error meaning and state parsing.

Usage and events are already in Stigg's wire shape (camelCase), which is also
the shape of GraphQL's ``ReportUsageBaseInput`` and ``UsageEventReportInput``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from stigg_cache.adapters._http import camel_case
from stigg_cache.adapters._stigg_json import parse_entitlements_state
from stigg_cache.errors import (
    FailureKind,
    InvalidResponseError,
    StiggRejectedError,
    StiggUnavailableError,
)
from stigg_cache.models import Snapshot

# Apollo's codes for a request that will fail the same way if sent again.
REJECTING_CODES = frozenset(
    {
        "BAD_USER_INPUT",
        "GRAPHQL_PARSE_FAILED",
        "GRAPHQL_VALIDATION_FAILED",
    }
)
AUTH_CODES = frozenset({"UNAUTHENTICATED", "FORBIDDEN"})  # our API key was refused
EDGE_STATE = "entitlements-state.json"
# What the state parser reads, as a valid document: the v1 SDK's own GetEntitlementsState
# names fragments it never defines, and its GetEntitlements loses the customer's denial.
ENTITLEMENTS_STATE_QUERY = """
query GetEntitlementsState($query: FetchEntitlementsQuery!) {
  entitlementsState(query: $query) {
    __typename
    accessDeniedReason
    entitlementsV2 {
      __typename
      ... on FeatureEntitlement {
        isGranted accessDeniedReason usageLimit currentUsage hasUnlimitedUsage hasSoftLimit
        enumValues resetPeriod usagePeriodAnchor usagePeriodStart usagePeriodEnd
        entitlementUpdatedAt validUntil
        feature { featureType displayName refId }
      }
      ... on CreditEntitlement {
        isGranted accessDeniedReason usageLimit currentUsage usagePeriodEnd validUntil
        currency { currencyId displayName }
      }
    }
  }
}
"""
# REST spells a promotion's period as text; GraphQL's PromotionalEntitlementPeriod is an enum.
_PERIODS = {
    "1 week": "ONE_WEEK",
    "1 month": "ONE_MONTH",
    "6 month": "SIX_MONTH",
    "1 year": "ONE_YEAR",
    "lifetime": "LIFETIME",
    "custom": "CUSTOM",
}


def failure_for_errors(errors: Sequence[Any]) -> StiggUnavailableError:
    """The failure a GraphQL ``errors`` list means: refused for good, or try again."""
    listed = [error for error in errors if isinstance(error, Mapping)]
    text = "; ".join(str(error.get("message"))[:200] for error in listed[:3]) or str(errors)[:200]
    codes = {str((error.get("extensions") or {}).get("code")) for error in listed}
    if codes & AUTH_CODES:
        return StiggRejectedError(FailureKind.AUTH, f"Stigg refused the API key: {text}")
    if codes & REJECTING_CODES:
        return StiggRejectedError(FailureKind.REJECTED, f"Stigg refused the request: {text}")
    return StiggUnavailableError(FailureKind.SERVER, f"Stigg answered with errors: {text}")


def snapshot_from_state(state: object, customer_id: str, resource_id: str | None) -> Snapshot:
    """A snapshot from an ``entitlementsState`` object, or the failure it is."""
    try:
        return parse_entitlements_state(
            state, customer_id=customer_id, resource_id=resource_id, fetched_at=0.0
        )
    except (InvalidResponseError, RecursionError) as error:
        raise _unusable(error) from None


def snapshot_from_answer(document: object, customer_id: str, resource_id: str | None) -> Snapshot:
    """A snapshot from a whole Edge JSON or GraphQL answer.

    Both answer ``{"data": {"entitlementsState": {...}}}``; GraphQL may answer
    ``{"errors": [...]}`` instead, a failure like any other.
    """
    data = document.get("data") if isinstance(document, dict) else None
    state = data.get("entitlementsState") if isinstance(data, dict) else None
    if state is None:
        errors = document.get("errors") if isinstance(document, dict) else None
        raise _unusable(f"no entitlementsState (errors: {str(errors)[:200]})")
    return snapshot_from_state(state, customer_id, resource_id)


def snapshot_from_state_body(body: bytes, customer_id: str, resource_id: str | None) -> Snapshot:
    """:func:`snapshot_from_answer` of an answer's bytes."""
    try:
        document = json.loads(body)
    except (ValueError, RecursionError) as error:
        raise _unusable(error) from None
    return snapshot_from_answer(document, customer_id, resource_id)


def _unusable(why: object) -> StiggUnavailableError:
    return StiggUnavailableError(
        FailureKind.INVALID_RESPONSE, f"Stigg's entitlements state is unusable: {why}"
    )


def grant_input(customer_id: str, grants: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """``GrantPromotionalEntitlementsInput`` from grants as the REST SDK takes them."""
    promotions = []
    for grant in grants:
        promotion = camel_case(grant)
        period = promotion.get("period")
        promotion["period"] = _PERIODS.get(period, period) if isinstance(period, str) else period
        promotions.append(promotion)
    return {"customerId": customer_id, "promotionalEntitlements": promotions}


def fetch_query(customer_id: str, resource_id: str | None) -> dict[str, str]:
    """``FetchEntitlementsQuery`` variables."""
    query = {"customerId": customer_id}
    if resource_id is not None:
        query["resourceId"] = resource_id
    return query
