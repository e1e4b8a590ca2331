"""The fake Stigg's GraphQL endpoint and Edge JSON, for the GraphQL SDKs.

Requests are parsed with graphql-core (the ``[testing]`` extra); answers are built by walking the
operation's own selection set over full objects, so every SDK gets exactly
the fields (and aliases, and ``__typename``\\ s) its generated models ask for.
Only the operations stigg-cache sends are served; others answer a GraphQL error.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import datetime
from types import ModuleType
from typing import Any

from stigg_cache.adapters import require
from stigg_cache.testing.account import Answer, FakeAccount, json_answer
from stigg_cache.testing.subscriptions import graphql_object

_CONCRETE_TYPES = frozenset(
    {
        "Entitlement",
        "FeatureEntitlement",
        "CreditEntitlement",
        "EntitlementsState",
        "MonthlyResetPeriodConfig",
        "WeeklyResetPeriodConfig",
        "YearlyResetPeriodConfig",
        "UsageMeasurementWithCurrentUsage",
        "PromotionalEntitlement",
        "CustomerSubscription",
        "Plan",
    }
)


def state_json(account: FakeAccount, customer_id: str, resource_id: str | None) -> dict[str, Any]:
    """``entitlementsState`` with every field of both GraphQL entitlement types."""
    rest = account.entitlements(customer_id, resource_id)
    legacy = [
        _entitlement(item, "Entitlement", customer_id, resource_id)
        for item in rest["entitlements"]
        if item["type"] == "FEATURE"
    ]
    current = [
        _credit(item)
        if item["type"] == "CREDIT"
        else _entitlement(item, "FeatureEntitlement", customer_id, resource_id)
        for item in rest["entitlements"]
    ]
    return {
        "__typename": "EntitlementsState",
        "entitlements": legacy,
        "entitlementsV2": current,
        "accessDeniedReason": rest["accessDeniedReason"],
    }


def _epoch_ms(value: str | None) -> float | None:
    return None if value is None else datetime.fromisoformat(value).timestamp() * 1000


def _entitlement(
    item: Mapping[str, Any], typename: str, customer_id: str, resource_id: str | None
) -> dict[str, Any]:
    feature = item["feature"]
    metered = item.get("resetPeriod") is not None
    valid_until = item.get("validUntil")
    return {
        **{key: value for key, value in item.items() if key != "type"},
        "__typename": typename,
        "customerId": customer_id,
        "resourceId": resource_id,
        "hasUnlimitedUsage": bool(item.get("hasUnlimitedUsage")),
        # Entitlement.validUntil is a Float (epoch ms); FeatureEntitlement's is a DateTime.
        "validUntil": _epoch_ms(valid_until) if typename == "Entitlement" else valid_until,
        "feature": {
            "__typename": "EntitlementFeature",
            "featureType": feature.get("featureType") or "BOOLEAN",
            "meterType": "Incremental" if metered else "None",
            "displayName": feature.get("displayName") or feature["id"],
            "refId": feature["id"],
        },
    }


def _credit(item: Mapping[str, Any]) -> dict[str, Any]:
    currency = {"__typename": "EntitlementCurrency", **item["currency"]}
    plain = {key: value for key, value in item.items() if key != "type"}
    return {**plain, "__typename": "CreditEntitlement", "currency": currency}


def graphql_core() -> ModuleType:
    """graphql-core, which parses the requests; an ImportError naming the extra without it."""
    return require("graphql", "graphql-core", "testing")


def missing_extra(error: ImportError) -> Answer:
    """What the endpoint answers without graphql-core: a GraphQL error the SDKs show,
    naming the extra (never a dropped connection, which looks like an outage)."""
    return _errors(200, f"the fake Stigg's GraphQL endpoint cannot answer: {error}", "INTERNAL")


def answer_graphql(account: FakeAccount, document: Any) -> Answer:
    """Answer one GraphQL request body (already JSON-decoded).

    Raises:
        ImportError: graphql-core is not installed (the ``[testing]`` extra).
    """
    graphql = graphql_core()
    if not isinstance(document, dict) or not isinstance(document.get("query"), str):
        return _errors(400, "expected {query, variables}")
    try:
        parsed = graphql.parse(document["query"])
    except graphql.GraphQLError as error:
        return _errors(400, f"syntax: {error.message}", "GRAPHQL_PARSE_FAILED")
    return _execute(account, parsed, document)


def _execute(account: FakeAccount, parsed: Any, document: dict[str, Any]) -> Answer:
    variables = document.get("variables") or {}
    operations = {
        definition.name.value: definition
        for definition in parsed.definitions
        if definition.kind == "operation_definition" and definition.name is not None
    }
    fragments = {
        definition.name.value: definition
        for definition in parsed.definitions
        if definition.kind == "fragment_definition"
    }
    name = document.get("operationName")
    if not name and len(operations) == 1:  # as GraphQL allows; the v1 SDK sends null
        (name,) = operations
    operation = operations.get(name or "")
    if operation is None:
        return _errors(200, f"unknown operation {name!r}")
    data: dict[str, Any] = {}
    for field in operation.selection_set.selections:
        args = {arg.name.value: _value(arg.value, variables) for arg in field.arguments}
        resolver = _RESOLVERS.get(field.name.value)
        if resolver is None:
            return _errors(200, f"the fake does not serve {field.name.value!r}", "UNSUPPORTED")
        result = resolver(account, args)
        if isinstance(result, _Refused):
            return result.answer
        key = field.alias.value if field.alias else field.name.value
        try:
            data[key] = _project(result, field.selection_set, fragments)
        except KeyError as error:  # as Stigg's validation does: the v1 SDK's state query hits this
            return _errors(200, f"Unknown fragment {error}.", "GRAPHQL_VALIDATION_FAILED")
    return json_answer(200, {"data": data})


class _Refused:
    """An account's refusal as GraphQL says it: 429 stays HTTP, the rest are ``errors``."""

    def __init__(self, status: int, headers: dict[str, str], body: Any) -> None:
        message = body.get("message", "refused") if isinstance(body, dict) else str(body)
        if status == 429:
            self.answer = json_answer(429, {"errors": [{"message": message}]}, headers)
        else:
            self.answer = _errors(200, message, "BAD_USER_INPUT")


def _rest(answer: Answer) -> Any:
    """The ``data`` of an account answer, or its refusal."""
    status, headers, body = answer
    document = json.loads(body)
    return document["data"] if status == 200 else _Refused(status, headers, document)


def _state(account: FakeAccount, args: dict[str, Any]) -> Any:
    query = args["query"]
    return state_json(account, query["customerId"], query.get("resourceId"))


def _usage(account: FakeAccount, usages: list[Any]) -> Any:
    data = _rest(account.report_usage({"usages": usages}))
    if isinstance(data, _Refused):
        return data
    kind = {"__typename": "UsageMeasurementWithCurrentUsage", "credit": None}
    return [{**item, **kind} for item in data["usages"]]


def _events(account: FakeAccount, args: dict[str, Any]) -> Any:
    data = _rest(account.report_events({"events": args["events"]["usageEvents"]}))
    return data if isinstance(data, _Refused) else None


def _grant(account: FakeAccount, args: dict[str, Any]) -> Any:
    grant = args["input"]
    body = {"promotionalEntitlements": grant["promotionalEntitlements"]}
    data = _rest(account.grant_promotions(grant["customerId"], body))
    return data if isinstance(data, _Refused) else [_promotion(item) for item in data]


def _revoke(account: FakeAccount, args: dict[str, Any]) -> Any:
    revoke = args["input"]
    data = _rest(account.revoke_promotion(revoke["customerId"], revoke["featureId"]))
    return data if isinstance(data, _Refused) else {"id": data["id"]}


def _active_subscriptions(account: FakeAccount, args: dict[str, Any]) -> Any:
    wanted = args["input"]
    held = account.subscriptions(wanted["customerId"], wanted.get("resourceId"))
    return [graphql_object(subscription) for subscription in held]


def _first(result: Any) -> Any:
    return result if isinstance(result, _Refused) else result[0]


_RESOLVERS: dict[str, Callable[[FakeAccount, dict[str, Any]], Any]] = {
    "entitlementsState": _state,
    "cachedEntitlements": lambda account, args: _state(account, args)["entitlements"],
    "reportUsage": lambda account, args: _first(_usage(account, [args["input"]])),
    "reportUsageBulk": lambda account, args: _usage(account, args["input"]["usages"]),
    "reportEvent": _events,
    "grantPromotionalEntitlements": _grant,
    "revokePromotionalEntitlement": _revoke,
    "getActiveSubscriptions": _active_subscriptions,
}


def _promotion(item: Mapping[str, Any]) -> dict[str, Any]:
    feature = {
        "featureType": "NUMBER",
        "displayName": item["featureId"],
        "refId": item["featureId"],
    }
    return {**item, "__typename": "PromotionalEntitlement", "isVisible": True, "feature": feature}


def _errors(status: int, message: str, code: str = "BAD_REQUEST") -> Answer:
    error = {"message": message, "extensions": {"code": code}}
    return json_answer(status, {"data": None, "errors": [error]})


def _value(node: Any, variables: Mapping[str, Any]) -> Any:
    """A GraphQL argument value (literal or ``$variable``) as plain Python."""
    return graphql_core().value_from_ast_untyped(node, dict(variables))


def _project(value: Any, selection_set: Any, fragments: Mapping[str, Any]) -> Any:
    if selection_set is None or value is None:
        return value
    if isinstance(value, list):
        return [_project(item, selection_set, fragments) for item in value]
    result: dict[str, Any] = {}
    _select(value, selection_set, fragments, result)
    return result


def _select(
    value: Mapping[str, Any], selection_set: Any, fragments: Mapping[str, Any], into: dict[str, Any]
) -> None:
    typename = value.get("__typename")
    for selection in selection_set.selections:
        if selection.kind == "field":
            name = selection.name.value
            key = selection.alias.value if selection.alias else name
            into[key] = _project(value.get(name), selection.selection_set, fragments)
            continue
        if selection.kind == "fragment_spread":
            fragment = fragments[selection.name.value]
            condition, inner = fragment.type_condition, fragment.selection_set
        else:
            condition, inner = selection.type_condition, selection.selection_set
        applies = (
            condition is None
            or condition.name.value == typename
            or condition.name.value not in _CONCRETE_TYPES  # an interface or union
        )
        if applies:
            _select(value, inner, fragments, into)
