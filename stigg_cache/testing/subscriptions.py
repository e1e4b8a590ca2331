"""The fake Stigg's subscriptions: which plans a customer is on, in each API's shape.

Stigg serves a customer's subscriptions three ways, and the fake serves all three
from one record:

* REST ``GET /api/v1/subscriptions?customerId=&status=&resourceId=`` (the REST SDK's
  ``v1.subscriptions.list``): a cursor page of ``SubscriptionListResponse``, the plan
  as ``planId``;
* GraphQL ``getActiveSubscriptions(input: GetActiveSubscriptionsInput)``: a list of
  ``CustomerSubscription``, the plan as ``plan { refId }`` (the SDKs alias it);
* Edge ``GET {edge}/v1/c/{customerId}/subscriptions.json[?resourceId=]``: the GraphQL
  answer's ``data`` as the v2 SDK's ``SlimSubscriptionFragmentV2`` reads it.

Active means ``ACTIVE`` or ``IN_TRIAL``, as Stigg's ``getActiveSubscriptions`` has it.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

import attrs

SubscriptionStatus = Literal[
    "ACTIVE", "IN_TRIAL", "CANCELED", "EXPIRED", "NOT_STARTED", "PAYMENT_PENDING"
]
ACTIVE_STATUSES = frozenset({"ACTIVE", "IN_TRIAL"})
ALL_STATUSES = frozenset(get_args(SubscriptionStatus))
_STARTED = "2026-01-01T00:00:00+00:00"


@attrs.frozen
class Subscription:
    """One subscription of a customer (or of one of its resources) to a plan."""

    subscription_id: str
    customer_id: str
    plan_id: str
    resource_id: str | None = None
    status: SubscriptionStatus = "ACTIVE"


def rest_item(subscription: Subscription) -> dict[str, Any]:
    """A ``SubscriptionListResponse`` (the REST SDK's required fields and the resource)."""
    return {
        "id": subscription.subscription_id,
        "createdAt": _STARTED,
        "startDate": _STARTED,
        "customerId": subscription.customer_id,
        "resourceId": subscription.resource_id,
        "planId": subscription.plan_id,
        "status": subscription.status,
        "pricingType": "PAID",
        "paymentCollection": "NOT_REQUIRED",
    }


def graphql_object(subscription: Subscription) -> dict[str, Any]:
    """A ``CustomerSubscription`` with every field the SDKs' fragments select."""
    resource = subscription.resource_id
    return {
        "__typename": "CustomerSubscription",
        **dict.fromkeys(_UNSET),
        "subscriptionId": subscription.subscription_id,
        "status": subscription.status,
        "pricingType": "PAID",
        "startDate": _STARTED,
        "customer": {"customerId": subscription.customer_id, "email": None},
        "resource": None if resource is None else {"resourceId": resource},
        "plan": {
            "__typename": "Plan",
            "refId": subscription.plan_id,
            "planId": subscription.plan_id,  # Edge's JSON, as the GraphQL alias reads it
            "displayName": subscription.plan_id,
            "description": None,
            "product": {"refId": "product", "displayName": "Product", "downgradePlan": None},
        },
        "addons": [],
        "prices": [],
    }


_UNSET = (
    "endDate",
    "cancellationDate",
    "effectiveEndDate",
    "currentBillingPeriodEnd",
    "currentBillingPeriodStart",
    "billingPeriod",
    "additionalMetaData",
    "totalPrice",
    "payingCustomer",
    "trialConfiguration",
    "trialEndDate",
)
