"""What the fake Stigg knows: customers, usage, events, promotions, and Stigg's limits.

Semantics follow Stigg's documentation: events are deduplicated on (timestamp,
customer, resource, event name, idempotency key) and usage on its key, for 7
days; aggregation into ``currentUsage`` is asynchronous (``aggregation_delay_s``);
batches are capped (1,000 events, 100 usage records, 1 MB an event); rates
are capped (events per second, usage calls per minute) with 429 + Retry-After.
"""

from __future__ import annotations

import json
import math
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs

from stigg_cache.adapters._stigg_json import snapshot_to_json
from stigg_cache.core.pacing import (
    EVENTS_PER_SECOND,
    MAX_EVENTS_PER_BATCH,
    MAX_USAGE_PER_BATCH,
    USAGE_CALLS_PER_MINUTE,
    TokenBucket,
)
from stigg_cache.models import AccessDeniedReason, FeatureEntitlement, Snapshot
from stigg_cache.outbox.records import MAX_EVENT_BYTES, encoded_size
from stigg_cache.testing.subscriptions import ACTIVE_STATUSES, Subscription, SubscriptionStatus

Answer = tuple[int, dict[str, str], bytes]


def json_answer(status: int, body: object, headers: Mapping[str, str] | None = None) -> Answer:
    """A JSON response triple."""
    return (
        status,
        {"Content-Type": "application/json", **(headers or {})},
        json.dumps(body).encode(),
    )


def _error(status: int, message: str, code: str = "BadRequest") -> Answer:
    return json_answer(status, {"message": message, "code": code})


@attrs.define
class _Customer:
    entitlements: dict[str, FeatureEntitlement]
    access_denied_reason: AccessDeniedReason | None = None
    promotions: dict[str, tuple[dict[str, Any], FeatureEntitlement | None]] = attrs.Factory(dict)


@attrs.define
class _Pending:
    apply_at: float
    customer_id: str
    resource_id: str | None
    feature_id: str
    value: float
    is_set: bool


class FakeAccount:
    """One Stigg environment's state, thread-safe."""

    def __init__(
        self,
        *,
        events_per_second: float = EVENTS_PER_SECOND,
        usage_calls_per_minute: float = USAGE_CALLS_PER_MINUTE,
        aggregation_delay_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._customers: dict[tuple[str, str | None], _Customer] = {}
        self._subscriptions: dict[tuple[str, str | None], list[Subscription]] = {}
        self._meters: dict[str, list[tuple[str, str | None]]] = {}
        self._pending: list[_Pending] = []
        self._event_ids: set[tuple[Any, ...]] = set()
        self._usage_keys: set[tuple[str, str]] = set()  # (customer, key): a key is its customer's
        self.events: list[dict[str, Any]] = []  # every event counted, in arrival order
        self.usages: list[dict[str, Any]] = []  # every usage record counted
        self.receipts: Counter[str] = Counter()  # every key received, duplicates included
        self.rejected_customers: set[str] = set()
        self.subscription_reads = 0  # lists of a customer's subscriptions served
        self.aggregation_delay_s = aggregation_delay_s
        self.rate_limited = 0
        self.set_limits(events_per_second, usage_calls_per_minute)

    # -- configuration ----------------------------------------------------------

    def set_limits(self, events_per_second: float, usage_calls_per_minute: float) -> None:
        """Stigg's ingestion limits, beyond which it answers 429 with Retry-After."""
        with self._lock:
            # A burst of one full batch is always allowed; the rate holds beyond it.
            self._event_bucket = TokenBucket(
                events_per_second, max(events_per_second, MAX_EVENTS_PER_BATCH)
            )
            usage_rate = usage_calls_per_minute / 60
            self._usage_bucket = TokenBucket(usage_rate, max(1.0, usage_rate))

    def set_customer(
        self,
        customer_id: str,
        entitlements: list[FeatureEntitlement],
        *,
        resource_id: str | None = None,
        access_denied_reason: AccessDeniedReason | None = None,
        plans: Sequence[str] = (),
    ) -> None:
        """Replace a customer's (or resource's) entitlements, and its active subscriptions
        with one to each of ``plans``."""
        with self._lock:
            self._customers[(customer_id, resource_id)] = _Customer(
                {e.feature_id: e for e in entitlements}, access_denied_reason
            )
            self._subscriptions[(customer_id, resource_id)] = [
                Subscription(f"sub-{uuid.uuid4().hex[:12]}", customer_id, plan, resource_id)
                for plan in plans
            ]

    def subscribe(
        self,
        customer_id: str,
        plan_id: str,
        *,
        resource_id: str | None = None,
        status: SubscriptionStatus = "ACTIVE",
    ) -> Subscription:
        """Add a subscription (of any status: only ACTIVE and IN_TRIAL ones are active)."""
        subscription = Subscription(
            f"sub-{uuid.uuid4().hex[:12]}", customer_id, plan_id, resource_id, status
        )
        with self._lock:
            self._subscriptions.setdefault((customer_id, resource_id), []).append(subscription)
        return subscription

    def set_usage(self, customer_id: str, feature_id: str, usage: float) -> None:
        with self._lock:
            customer = self._customers[(customer_id, None)]
            old = customer.entitlements[feature_id]
            customer.entitlements[feature_id] = attrs.evolve(old, current_usage=usage)

    def meter(self, event_name: str, feature_id: str, field: str | None = None) -> None:
        """Count ``event_name`` into ``feature_id`` (+1 each, or + dimensions[field])."""
        with self._lock:
            self._meters.setdefault(event_name, []).append((feature_id, field))

    # -- reads --------------------------------------------------------------------

    def customer_ids(self) -> list[str]:
        """Every customer with entitlements set, in the order they were first set."""
        with self._lock:
            return list(dict.fromkeys(customer for customer, _ in self._customers))

    def entitlements(self, customer_id: str, resource_id: str | None) -> dict[str, Any]:
        with self._lock:
            self._aggregate()
            customer = self._customers.get((customer_id, resource_id))
            if customer is None:
                customer = _Customer({}, "CustomerNotFound")
            snapshot = Snapshot(
                customer_id,
                resource_id,
                dict(customer.entitlements),
                time.time(),
                access_denied_reason=customer.access_denied_reason,
            )
        return snapshot_to_json(snapshot, updated_at=datetime.now(UTC))

    def subscriptions(
        self,
        customer_id: str,
        resource_id: str | None,
        statuses: Collection[str] = ACTIVE_STATUSES,
    ) -> list[Subscription]:
        """A customer's subscriptions of these statuses: every one of its own and its
        resources' (``resource_id`` None), else that resource's (counted in
        ``subscription_reads``)."""
        with self._lock:
            self.subscription_reads += 1
            return [
                subscription
                for (customer, resource), held in self._subscriptions.items()
                if customer == customer_id and resource_id in (None, resource)
                for subscription in held
                if subscription.status in statuses
            ]

    def usage_of(self, customer_id: str, feature_id: str, resource_id: str | None = None) -> float:
        """``currentUsage`` as Stigg would report it now."""
        with self._lock:
            self._aggregate()
            entitlement = self._customers[(customer_id, resource_id)].entitlements[feature_id]
            return entitlement.current_usage or 0.0

    def _aggregate(self) -> None:
        now = self._clock()
        due = [p for p in self._pending if p.apply_at <= now]
        self._pending = [p for p in self._pending if p.apply_at > now]
        for item in due:
            customer = self._customers.get((item.customer_id, item.resource_id))
            entitlement = None if customer is None else customer.entitlements.get(item.feature_id)
            if customer is None or entitlement is None:
                continue
            used = item.value if item.is_set else (entitlement.current_usage or 0.0) + item.value
            customer.entitlements[item.feature_id] = attrs.evolve(entitlement, current_usage=used)

    # -- writes -----------------------------------------------------------------

    def _batch_problem(
        self, body: Any, member: str, limit: int, problem_of: Callable[[Any], str | None]
    ) -> tuple[list[Any], Answer | None]:
        items = body.get(member) if isinstance(body, dict) else None
        if not isinstance(items, list) or not items:
            return [], _error(400, f"{member} must be a non-empty list")
        if len(items) > limit:
            return [], _error(400, f"at most {limit} {member} per request")
        for item in items:
            problem = problem_of(item)
            if problem is None and item["customerId"] in self.rejected_customers:
                problem = f"customer {item['customerId']} is not allowed to report {member}"
            if problem:
                return [], _error(400, problem)
        return items, None

    def report_events(self, body: Any) -> Answer:
        events, refusal = self._batch_problem(body, "events", MAX_EVENTS_PER_BATCH, _event_problem)
        if refusal is not None:
            return refusal
        with self._lock:
            wait = self._event_bucket.take(len(events), self._clock())
            if wait:
                return self._throttled(wait)
            for event in events:
                self._count_event(event)
        return json_answer(200, {"data": {}})

    def _throttled(self, wait_s: float) -> Answer:
        self.rate_limited += 1
        retry = {"Retry-After": str(max(1, math.ceil(wait_s)))}
        return json_answer(429, {"message": "Too Many Requests", "code": "RateLimited"}, retry)

    def _count_event(self, event: dict[str, Any]) -> None:
        key = event["idempotencyKey"]
        self.receipts[key] += 1
        identity = (
            event.get("timestamp"),
            event["customerId"],
            event.get("resourceId"),
            event["eventName"],
            key,
        )
        if identity in self._event_ids:
            return
        self._event_ids.add(identity)
        self.events.append(event)
        for feature_id, field in self._meters.get(event["eventName"], ()):
            dimensions = event.get("dimensions") or {}
            value = 1.0 if field is None else float(dimensions.get(field, 0) or 0)
            self._pending.append(
                _Pending(
                    self._clock() + self.aggregation_delay_s,
                    event["customerId"],
                    event.get("resourceId"),
                    feature_id,
                    value,
                    is_set=False,
                )
            )

    def report_usage(self, body: Any) -> Answer:
        usages, refusal = self._batch_problem(body, "usages", MAX_USAGE_PER_BATCH, _usage_problem)
        if refusal is not None:
            return refusal
        with self._lock:
            wait = self._usage_bucket.take(1, self._clock())
            if wait:
                return self._throttled(wait)
            items = [self._count_usage(usage) for usage in usages]
        return json_answer(200, {"data": {"usages": items, "credits": None, "entities": None}})

    def _count_usage(self, usage: dict[str, Any]) -> dict[str, Any]:
        key = usage.get("idempotencyKey")
        if key is not None:
            self.receipts[key] += 1
        fresh = key is None or (usage["customerId"], key) not in self._usage_keys
        if fresh:
            if key is not None:
                self._usage_keys.add((usage["customerId"], key))
            self.usages.append(usage)
            self._pending.append(
                _Pending(
                    self._clock() + self.aggregation_delay_s,
                    usage["customerId"],
                    usage.get("resourceId"),
                    usage["featureId"],
                    float(usage["value"]),
                    is_set=usage.get("updateBehavior") == "SET",
                )
            )
        return {
            "id": str(uuid.uuid4()),
            "customerId": usage["customerId"],
            "featureId": usage["featureId"],
            "value": usage["value"],
            "resourceId": usage.get("resourceId"),
            "timestamp": usage.get("createdAt"),
            "createdAt": usage.get("createdAt"),
            "currentUsage": self._counted(
                usage["customerId"], usage.get("resourceId"), usage["featureId"]
            ),
            "credit": {"consumed": 0 if not fresh else usage["value"]},
        }

    def _counted(self, customer_id: str, resource_id: str | None, feature_id: str) -> float | None:
        """The feature's usage with every report so far counted (what Stigg answers a report
        with), while reads still show it only once aggregated (``aggregation_delay_s``)."""
        customer = self._customers.get((customer_id, resource_id))
        entitlement = None if customer is None else customer.entitlements.get(feature_id)
        if entitlement is None or entitlement.current_usage is None:
            return None
        used = entitlement.current_usage
        for item in self._pending:
            if (item.customer_id, item.resource_id, item.feature_id) == (
                customer_id,
                resource_id,
                feature_id,
            ):
                used = item.value if item.is_set else used + item.value
        return used

    # -- promotions -------------------------------------------------------------------

    def grant_promotions(self, customer_id: str, body: Any) -> Answer:
        grants = body.get("promotionalEntitlements") if isinstance(body, dict) else None
        if not isinstance(grants, list) or not grants:
            return _error(400, "promotionalEntitlements must be a non-empty list")
        with self._lock:
            customer = self._customers.get((customer_id, None))
            if customer is None:
                return _error(404, f"customer {customer_id} not found", "CustomerNotFound")
            created = [self._grant(customer, grant) for grant in grants]
        return json_answer(200, {"data": created})

    def _grant(self, customer: _Customer, grant: dict[str, Any]) -> dict[str, Any]:
        feature_id = grant["featureId"]
        previous = customer.promotions.get(feature_id)
        base = previous[1] if previous else customer.entitlements.get(feature_id)
        now = datetime.now(UTC)
        customer.entitlements[feature_id] = FeatureEntitlement(
            feature_id,
            "NUMBER" if grant.get("usageLimit") is not None else "BOOLEAN",
            is_granted=True,
            usage_limit=grant.get("usageLimit"),
            current_usage=None if grant.get("usageLimit") is None else 0.0,
            has_unlimited_usage=bool(grant.get("hasUnlimitedUsage")),
            display_name=feature_id,
        )
        promotion = {
            "id": str(uuid.uuid4()),
            "featureId": feature_id,
            "status": "Active",
            "period": grant.get("period", "1 month"),
            "usageLimit": grant.get("usageLimit"),
            "startDate": now.isoformat(),
            "endDate": (now + timedelta(days=30)).isoformat(),
            "createdAt": now.isoformat(),
            "updatedAt": now.isoformat(),
        }
        customer.promotions[feature_id] = (promotion, base)
        return promotion

    def revoke_promotion(self, customer_id: str, feature_id: str) -> Answer:
        with self._lock:
            customer = self._customers.get((customer_id, None))
            entry = None if customer is None else customer.promotions.pop(feature_id, None)
            if customer is None or entry is None:
                return _error(404, f"no promotional entitlement for {feature_id}", "NotFound")
            promotion, base = entry
            if base is None:
                customer.entitlements.pop(feature_id, None)
            else:
                customer.entitlements[feature_id] = base
        return json_answer(200, {"data": {**promotion, "status": "Expired"}})


def _event_problem(event: Any) -> str | None:
    if not isinstance(event, dict):
        return "each event must be an object"
    for field in ("customerId", "eventName", "idempotencyKey"):
        if not isinstance(event.get(field), str) or not event[field]:
            return f"{field} is required"
    if encoded_size(event) > MAX_EVENT_BYTES:  # UTF-8, as the library measures
        return f"event larger than {MAX_EVENT_BYTES} bytes"
    return None


def _usage_problem(usage: Any) -> str | None:
    if not isinstance(usage, dict):
        return "each usage must be an object"
    for field in ("customerId", "featureId"):
        if not isinstance(usage.get(field), str) or not usage[field]:
            return f"{field} is required"
    value = usage.get("value")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "value must be a number"
    return None
