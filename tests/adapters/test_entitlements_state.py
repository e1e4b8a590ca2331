"""Stigg's entitlementsState (GraphQL and Edge JSON) parsed into the same snapshot as REST."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from stigg_cache.adapters._graphql import snapshot_from_state_body
from stigg_cache.errors import StiggUnavailableError

FEATURE_FIELDS = {
    "isGranted": True,
    "accessDeniedReason": None,
    "usageLimit": 100.0,
    "hasUnlimitedUsage": False,
    "hasSoftLimit": False,
    "currentUsage": 40.0,
    "enumValues": None,
    "entitlementUpdatedAt": "2026-11-01T00:00:00Z",
    "usageUpdatedAt": None,
    "usagePeriodAnchor": "2026-11-01T00:00:00Z",
    "usagePeriodStart": "2026-11-01T00:00:00Z",
    "usagePeriodEnd": "2026-12-01T00:00:00Z",
    "resetPeriod": "MONTH",
    "resetPeriodConfiguration": {
        "__typename": "MonthlyResetPeriodConfig",
        "monthlyAccordingTo": "SubscriptionStart",
    },
    "creditRate": None,
    "validUntil": "2026-12-01T00:00:00Z",
}


def _feature(ref_id: str, feature_type: str, **fields: Any) -> dict[str, Any]:
    feature = {
        "__typename": "EntitlementFeature",
        "featureType": feature_type,
        "meterType": "Incremental",
        "featureUnits": None,
        "featureUnitsPlural": None,
        "description": None,
        "displayName": ref_id.title(),
        "refId": ref_id,
        "unitTransformation": None,
    }
    return {**FEATURE_FIELDS, **fields, "feature": feature}


STATE_V2 = {
    "__typename": "EntitlementsState",
    "entitlements": [],
    "entitlementsV2": [
        {"__typename": "FeatureEntitlement", **_feature("api_calls", "NUMBER")},
        {
            "__typename": "FeatureEntitlement",
            **_feature("sso", "BOOLEAN", usageLimit=None, currentUsage=None),
        },
        {
            "__typename": "CreditEntitlement",
            "isGranted": True,
            "accessDeniedReason": None,
            "currency": {
                "currencyId": "tokens",
                "displayName": "Tokens",
                "description": None,
                "unitSingular": "token",
                "unitPlural": "tokens",
                "additionalMetaData": None,
            },
            "usageLimit": 10.0,
            "currentUsage": 2.0,
            "hasSoftLimit": False,
            "usageUpdatedAt": None,
            "entitlementUpdatedAt": None,
            "usagePeriodEnd": None,
            "validUntil": None,
        },
    ],
    "accessDeniedReason": None,
}


@pytest.mark.parametrize("where", ["graphql", "edge"])
def test_the_v2_state_gives_features_by_ref_id_and_credits(where: str) -> None:
    del where  # both answer {"data": {"entitlementsState": ...}}
    body = json.dumps({"data": {"entitlementsState": STATE_V2}}).encode()
    snapshot = snapshot_from_state_body(body, "acme", None)
    assert sorted(snapshot.entitlements) == ["api_calls", "sso"]
    api = snapshot.entitlements["api_calls"]
    assert (api.feature_type, api.usage_limit, api.current_usage, api.reset_period) == (
        "NUMBER",
        100.0,
        40.0,
        "MONTH",
    )
    assert snapshot.entitlements["sso"].is_granted
    assert snapshot.credits["tokens"].usage_limit == 10.0


def test_the_older_entitlements_list_is_read_when_v2_is_absent() -> None:
    state = {
        "entitlements": [{"__typename": "Entitlement", **_feature("seats", "NUMBER")}],
        "accessDeniedReason": "NoActiveSubscription",
    }
    snapshot = snapshot_from_state_body(
        json.dumps({"data": {"entitlementsState": state}}).encode(), "acme", "r1"
    )
    assert list(snapshot.entitlements) == ["seats"]
    assert snapshot.access_denied_reason == "NoActiveSubscription"
    assert snapshot.resource_id == "r1"


def test_the_older_type_gives_valid_until_in_epoch_milliseconds() -> None:
    item = {
        "__typename": "Entitlement",
        **_feature("seats", "NUMBER"),
        "validUntil": 1796083200000.0,
    }
    state = {"entitlements": [item], "accessDeniedReason": None}
    snapshot = snapshot_from_state_body(
        json.dumps({"data": {"entitlementsState": state}}).encode(), "acme", None
    )
    assert snapshot.entitlements["seats"].valid_until == datetime(2026, 12, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    "body",
    [
        b'{"errors": [{"message": "Unauthorized"}], "data": null}',
        b'{"data": {"entitlementsState": {"entitlementsV2": "nope"}}}',
        b'{"data": {"entitlementsState": {"entitlementsV2": [{"__typename": "FeatureEntitlement", "isGranted": "yes", "feature": {"refId": "x"}}]}}}',
        b'{"data": {"entitlementsState": {"entitlements": [{"__typename": "Entitlement", "isGranted": true, "feature": {"refId": "x"}, "validUntil": 1e300}]}}}',
        b"<html>502</html>",
        b"[",
    ],
)
def test_anything_else_is_an_unusable_answer(body: bytes) -> None:
    with pytest.raises(StiggUnavailableError, match="entitlements state is unusable"):
        snapshot_from_state_body(body, "acme", None)
