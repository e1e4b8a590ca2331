"""The customer's plans, read from its active subscriptions, for policy rules on ``plans:``.

Stigg's entitlement answers name no plan; its subscriptions do. Every adapter
that can reads them with the entitlements, under the same call's deadline, and
the snapshot it returns carries their plan ids (stored and signed with it):

* REST (built-in client, REST SDK): ``GET /api/v1/subscriptions?customerId=&status=``;
* GraphQL (v1 and v2 SDKs): ``getActiveSubscriptions``, or Edge's
  ``subscriptions.json`` when the client has Edge on: a second Edge read per fetch,
  so such an adapter paces fetches at half the Edge budget (:data:`EDGE_READS_PER_FETCH`);
* the sidecar's protocol carries no plan: :data:`KNOWS_PLANS` is false on its adapter,
  and a policy with ``plans:`` rules is warned about once.

A subscription read that fails fails the fetch, as the entitlements' would: a
snapshot's plans are Stigg's word, never a guess. A customer Stigg denied as a
whole (not found, archived, no active subscription) is on no plan: its
subscriptions are not read.
"""

from __future__ import annotations

import json
import time
from typing import Any

from stigg_cache.errors import FailureKind, StiggUnavailableError
from stigg_cache.models import Snapshot

ACTIVE = ("ACTIVE", "IN_TRIAL")  # what Stigg's getActiveSubscriptions counts as active
SUBSCRIPTIONS_PAGE = 100  # a customer's subscriptions: a handful, one page
EDGE_SUBSCRIPTIONS = "subscriptions.json"
EDGE_READS_PER_FETCH = 2  # entitlements-state.json and subscriptions.json
MIN_READ_S = 0.05  # what the second read gets when the first used the whole deadline
KNOWS_PLANS = "knows_plans"  # an adapter attribute: False where no plan can be known


def knows_plans(adapter: object) -> bool:
    """Whether an adapter's snapshots can name the customer's plans (an adapter of a
    third party is taken to fill them if it can: only ``knows_plans = False`` says not)."""
    return getattr(adapter, KNOWS_PLANS, True) is not False


def subscribed(snapshot: Snapshot) -> bool:
    """Whether a customer may have active subscriptions to read: not one Stigg denied as a
    whole (not found, archived, no active subscription), whose plans are none, and whose
    subscriptions Stigg may refuse to list."""
    return snapshot.access_denied_reason is None


def time_left(deadline: float) -> float:
    """What is left of a call's deadline (``time.monotonic()``) for its second read."""
    return max(deadline - time.monotonic(), MIN_READ_S)


def rest_query(customer_id: str, resource_id: str | None) -> dict[str, Any]:
    """``GET /api/v1/subscriptions`` parameters: the customer's active subscriptions."""
    query: dict[str, Any] = {
        "customerId": customer_id,
        "status": ",".join(ACTIVE),
        "limit": SUBSCRIPTIONS_PAGE,
    }
    if resource_id is not None:
        query["resourceId"] = resource_id
    return query


def graphql_input(customer_id: str, resource_id: str | None) -> dict[str, str]:
    """``GetActiveSubscriptionsInput``."""
    wanted = {"customerId": customer_id}
    if resource_id is not None:
        wanted["resourceId"] = resource_id
    return wanted


def plans_of_rest_body(body: bytes) -> tuple[str, ...]:
    """The plan ids of a ``GET /api/v1/subscriptions`` answer (``{"data": [...]}``)."""
    document = _json(body)
    data = document.get("data") if isinstance(document, dict) else None
    return _plan_ids(data, "data")


def plans_of_graphql(data: object) -> tuple[str, ...]:
    """The plan ids of a ``getActiveSubscriptions`` answer's ``data`` (GraphQL or Edge)."""
    listed = data.get("getActiveSubscriptions") if isinstance(data, dict) else None
    return _plan_ids(listed, "getActiveSubscriptions")


def plans_of_edge_body(document: object) -> tuple[str, ...]:
    """The plan ids of Edge's ``subscriptions.json`` (``{"data": {...}}``)."""
    return plans_of_graphql(document.get("data") if isinstance(document, dict) else None)


def _plan_ids(items: object, where: str) -> tuple[str, ...]:
    """Each active subscription's plan id, once each, in Stigg's order."""
    if not isinstance(items, list):
        raise _unusable(f"{where}: expected a list of subscriptions")
    plans: dict[str, None] = {}
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise _unusable(f"{where}[{index}]: expected an object")
        if item.get("status") not in ACTIVE:
            continue
        plan = item.get("plan")
        # REST names it planId; GraphQL plan { refId } as the SDKs alias it (v2 planId, v1 plan_id)
        plan_id = (
            item.get("planId")
            if plan is None
            else plan.get("planId") or plan.get("plan_id") or plan.get("refId")
            if isinstance(plan, dict)
            else None
        )
        if not isinstance(plan_id, str) or not plan_id:
            raise _unusable(f"{where}[{index}]: no plan id")
        plans[plan_id] = None
    return tuple(plans)


def _json(body: bytes) -> object:
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as error:
        raise _unusable(error) from None


def _unusable(why: object) -> StiggUnavailableError:
    return StiggUnavailableError(
        FailureKind.INVALID_RESPONSE, f"Stigg's subscriptions are unusable: {why}"
    )
