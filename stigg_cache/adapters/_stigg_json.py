"""Stigg's REST entitlement JSON <-> :mod:`stigg_cache.models`.

One schema for three readers: the REST adapters parse Stigg's answers with it,
the snapshot codec stores snapshots in it, and the fake Stigg writes it. Input
is foreign bytes: every shape error ends in :class:`InvalidResponseError`.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, cast

from stigg_cache.errors import InvalidResponseError
from stigg_cache.models import (
    ACCESS_DENIED_REASONS,
    FEATURE_TYPES,
    RESET_PERIODS,
    AccessDeniedReason,
    CreditEntitlement,
    FeatureEntitlement,
    FeatureType,
    Snapshot,
)

# The customer-level denials of Stigg's REST and GraphQL answers, and the sidecar's: its
# GetEntitlementsStateV2Response carries the full AccessDeniedReason, and names a resource
# it does not know CustomerResourceNotFound (an answer, not an unusable one).
_CUSTOMER_DENIED_REASONS = frozenset(
    {"CustomerNotFound", "NoActiveSubscription", "CustomerIsArchived", "CustomerResourceNotFound"}
)

_DECODER = json.JSONDecoder()  # built once
FEATURE_END = struct.Struct(">I")  # where a stored feature's JSON ends (LazyEntitlements)


def compact_json(text: str) -> Any:
    """JSON as this library writes it for stores (no whitespace around it), decoded
    without the two whitespace scans ``json.loads`` makes: a third of a small
    object's cost.

    Raises:
        ValueError: not JSON, or more than one JSON value.
    """
    value, end = _DECODER.raw_decode(text)
    if end != len(text):
        raise ValueError(f"extra data at character {end}")
    return value


def _obj(value: object, where: str) -> Mapping[str, Any]:
    if type(value) is dict:  # what json.loads makes: skip the slower ABC check
        return value
    if not isinstance(value, Mapping):
        raise InvalidResponseError(f"{where}: expected an object, got {type(value).__name__}")
    return cast("Mapping[str, Any]", value)


def _opt_str(item: Mapping[str, Any], key: str, where: str) -> str | None:
    value = item.get(key)
    if value is None or isinstance(value, str):
        return value
    raise InvalidResponseError(f"{where}.{key}: expected a string, got {type(value).__name__}")


def _opt_number(item: Mapping[str, Any], key: str, where: str) -> float | None:
    value = item.get(key)
    return None if value is None else _as_number(value, f"{where}.{key}")


def _flag(item: Mapping[str, Any], key: str, where: str) -> bool:
    value = item.get(key)
    return False if value is None else _as_flag(value, f"{where}.{key}")


def _opt_time(item: Mapping[str, Any], key: str, where: str) -> datetime | None:
    value = item.get(key)
    return None if value is None else _as_time(value, f"{where}.{key}")


def _as_time(value: Any, where: str) -> datetime:
    if not isinstance(value, str):
        raise InvalidResponseError(f"{where}: expected a time string, got {type(value).__name__}")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidResponseError(f"{where}: not an ISO-8601 time: {value[:40]!r}") from None
    if moment.tzinfo is None:
        raise InvalidResponseError(f"{where}: time without a UTC offset: {value[:40]!r}")
    return moment


def _enum(item: Mapping[str, Any], key: str, allowed: frozenset[str], where: str) -> str | None:
    value = item.get(key)
    return None if value is None else _as_member(value, allowed, f"{where}.{key}")


def _as_member(value: Any, allowed: frozenset[str], where: str) -> str:
    if not isinstance(value, str):  # an unhashable value must not reach ``in`` as TypeError
        raise InvalidResponseError(f"{where}: expected a string, got {type(value).__name__}")
    if value not in allowed:
        raise InvalidResponseError(f"{where}: unknown value {value[:40]!r}")
    return value


def _denied(item: Mapping[str, Any], where: str) -> AccessDeniedReason | None:
    return cast(
        "AccessDeniedReason | None", _enum(item, "accessDeniedReason", ACCESS_DENIED_REASONS, where)
    )


def _as_number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidResponseError(f"{where}: expected a number, got {type(value).__name__}")
    return float(value)


def _as_flag(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidResponseError(f"{where}: expected true or false")
    return value


def _as_reason(value: Any, where: str) -> str:
    return _as_member(value, ACCESS_DENIED_REASONS, where)


def _as_reset(value: Any, where: str) -> str:
    return _as_member(value, RESET_PERIODS, where)


def _as_values(value: Any, where: str) -> tuple[str, ...]:
    if not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
        raise InvalidResponseError(f"{where}: expected a list of strings")
    return tuple(value)


# Stigg's key -> (our field, converter). Absent and null keys are skipped, unknown keys
# ignored (Stigg adds fields): only what is present is looked at, once.
_FEATURE_FIELDS: dict[str, tuple[str, Callable[[Any, str], Any]]] = {
    "accessDeniedReason": ("access_denied_reason", _as_reason),
    "usageLimit": ("usage_limit", _as_number),
    "currentUsage": ("current_usage", _as_number),
    "hasUnlimitedUsage": ("has_unlimited_usage", _as_flag),
    "hasSoftLimit": ("has_soft_limit", _as_flag),
    "resetPeriod": ("reset_period", _as_reset),
    "usagePeriodAnchor": ("usage_period_anchor", _as_time),
    "usagePeriodStart": ("usage_period_start", _as_time),
    "usagePeriodEnd": ("usage_period_end", _as_time),
    "validUntil": ("valid_until", _as_time),
    "entitlementUpdatedAt": ("entitlement_updated_at", _as_time),
    "enumValues": ("enum_values", _as_values),
}


def _parse_feature(item: Mapping[str, Any], where: str) -> FeatureEntitlement:
    try:  # the location is only spelled out when something is wrong
        return _feature(item)
    except InvalidResponseError as error:
        raise InvalidResponseError(f"{where}.{error}") from None


def _feature(item: Mapping[str, Any]) -> FeatureEntitlement:
    """A feature entitlement; an error's location is relative to ``item``."""
    feature = _obj(item.get("feature"), "feature")
    feature_id = _opt_str(feature, "id", "feature")
    if not feature_id:
        raise InvalidResponseError("feature.id: missing")
    fields: dict[str, Any] = {}
    for key, value in item.items():
        if value is not None:
            spec = _FEATURE_FIELDS.get(key)
            if spec is not None:
                fields[spec[0]] = spec[1](value, key)
    is_granted = item.get("isGranted")
    if not isinstance(is_granted, bool):
        raise InvalidResponseError("isGranted: expected true or false")
    return FeatureEntitlement(
        feature_id,
        cast("FeatureType | None", _enum(feature, "featureType", FEATURE_TYPES, "feature")),
        is_granted,
        display_name=_opt_str(feature, "displayName", "feature"),
        **fields,
    )


def _parse_credit(item: Mapping[str, Any], where: str) -> CreditEntitlement:
    currency = _obj(item.get("currency"), f"{where}.currency")
    currency_id = _opt_str(currency, "currencyId", f"{where}.currency")
    if not currency_id:
        raise InvalidResponseError(f"{where}.currency.currencyId: missing")
    return CreditEntitlement(
        currency_id=currency_id,
        is_granted=_flag(item, "isGranted", where),
        access_denied_reason=_denied(item, where),
        usage_limit=_opt_number(item, "usageLimit", where) or 0.0,
        current_usage=_opt_number(item, "currentUsage", where) or 0.0,
        usage_period_end=_opt_time(item, "usagePeriodEnd", where),
        valid_until=_opt_time(item, "validUntil", where),
        display_name=_opt_str(currency, "displayName", f"{where}.currency"),
    )


_ABSENT = object()


def _at(feature_id: str) -> str:
    """Where a stored feature's error lies, for its message."""
    return f"entitlement {feature_id!r}"


class LazyEntitlements(Mapping[str, FeatureEntitlement]):
    """Feature entitlements decoded and parsed on first access.

    A snapshot loaded from a store answers one feature at a time; decoding
    all of them up front would triple the cost of a first check. ``ids`` are
    the feature ids in the order their JSON objects lie in ``blobs``, the one
    of index ``i`` ending at the ``i``-th of the big-endian 4-byte offsets in
    ``ends`` (read for the feature asked for only; an id is looked up by a
    scan: cheaper than building an index once per snapshot for the one feature
    a first check reads). Errors surface as :class:`InvalidResponseError` on
    access; readers of stored snapshots treat that as a corrupt entry.
    """

    __slots__ = ("_blobs", "_ends", "_ids", "_parsed")

    def __init__(self, ids: list[str], ends: memoryview | bytes, blobs: memoryview | bytes) -> None:
        self._ids = ids
        self._ends = ends
        self._blobs = blobs
        self._parsed: dict[str, FeatureEntitlement] = {}

    def _item(self, index: int, feature_id: str) -> Mapping[str, Any]:
        end_at, size = FEATURE_END.unpack_from, FEATURE_END.size
        start = end_at(self._ends, (index - 1) * size)[0] if index else 0
        end = end_at(self._ends, index * size)[0]
        if not start <= end <= len(self._blobs):
            raise InvalidResponseError(f"{_at(feature_id)}: malformed location {start}..{end}")
        try:
            item = compact_json(str(self._blobs[start:end], "utf-8"))
        except (ValueError, RecursionError) as error:
            raise InvalidResponseError(f"{_at(feature_id)}: not JSON ({error})") from None
        return item if type(item) is dict else _obj(item, _at(feature_id))

    def __getitem__(self, feature_id: str) -> FeatureEntitlement:
        parsed = self.get(feature_id, _ABSENT)
        if parsed is _ABSENT:
            raise KeyError(feature_id)
        return parsed  # type: ignore[no-any-return]

    def get(self, feature_id: str, default: Any = None) -> Any:  # Mapping.get goes by KeyError
        """The entitlement of ``feature_id`` (parsed now if it was not yet), else ``default``."""
        parsed = self._parsed.get(feature_id)
        if parsed is not None:
            return parsed
        try:
            index = self._ids.index(feature_id)
        except ValueError:
            return default
        return self._parse(feature_id, index)

    def _parse(self, feature_id: str, index: int) -> FeatureEntitlement:
        item = self._item(index, feature_id)
        try:  # the location is only spelled out when something is wrong
            parsed = _feature(item)
        except InvalidResponseError as error:
            raise InvalidResponseError(f"{_at(feature_id)}.{error}") from None
        if parsed.feature_id != feature_id:
            raise InvalidResponseError(f"{_at(feature_id)}: filed under another feature's id")
        self._parsed[feature_id] = parsed
        return parsed

    def __contains__(self, feature_id: object) -> bool:
        return feature_id in self._ids

    def __iter__(self) -> Iterator[str]:
        return iter(self._ids)

    def __len__(self) -> int:
        return len(self._ids)

    def __repr__(self) -> str:
        return f"LazyEntitlements({sorted(map(str, self._ids))!r})"


def parse_entitlements(
    data: object,
    *,
    customer_id: str,
    resource_id: str | None,
    fetched_at: float,
    plan_ids: tuple[str, ...] = (),
    features: Mapping[str, FeatureEntitlement] | None = None,
) -> Snapshot:
    """Build a snapshot from the ``data`` object of ``GET .../entitlements``.

    ``features``, if given, stands for the feature entitlements: the stored
    form keeps them apart, keyed by id, and parses them on access.

    Raises:
        InvalidResponseError: the value does not have Stigg's shape.
    """
    body = _obj(data, "data")
    items = body.get("entitlements")
    if not isinstance(items, list):
        raise InvalidResponseError("data.entitlements: expected a list")
    found: dict[str, FeatureEntitlement] = {}
    credit_items: dict[str, CreditEntitlement] = {}
    for index, raw in enumerate(items):
        where = f"data.entitlements[{index}]"
        item = _obj(raw, where)
        kind = item.get("type", "FEATURE")
        if kind == "FEATURE":
            feature = _parse_feature(item, where)
            found[feature.feature_id] = feature
        elif kind == "CREDIT":
            credit = _parse_credit(item, where)
            credit_items[credit.currency_id] = credit
        else:
            raise InvalidResponseError(f"{where}.type: unknown entitlement type {str(kind)[:40]!r}")
    reason = _enum(body, "accessDeniedReason", _CUSTOMER_DENIED_REASONS, "data")
    entitlements = found if features is None else features
    return Snapshot(
        customer_id=customer_id,
        resource_id=resource_id,
        entitlements=entitlements,
        credits=credit_items,
        access_denied_reason=cast("AccessDeniedReason | None", reason),
        fetched_at=fetched_at,
        plan_ids=plan_ids,
    )


def parse_entitlements_state(
    state: object, *, customer_id: str, resource_id: str | None, fetched_at: float
) -> Snapshot:
    """Build a snapshot from ``entitlementsState`` (Stigg's GraphQL and Edge JSON answer).

    ``entitlementsV2`` (features and credits, each with ``__typename``) is read
    when present, else the older ``entitlements``; features there name their
    id ``feature.refId`` where REST says ``feature.id``.

    Raises:
        InvalidResponseError: the value does not have Stigg's shape.
    """
    body = _obj(state, "entitlementsState")
    newer = body.get("entitlementsV2")
    items = newer if newer is not None else body.get("entitlements")
    if not isinstance(items, list):
        raise InvalidResponseError("entitlementsState.entitlements: expected a list")
    as_rest = [
        _rest_item(_obj(item, f"entitlementsState.entitlements[{index}]"))
        for index, item in enumerate(items)
    ]
    data = {"entitlements": as_rest, "accessDeniedReason": body.get("accessDeniedReason")}
    return parse_entitlements(
        data, customer_id=customer_id, resource_id=resource_id, fetched_at=fetched_at
    )


def _rest_item(item: Mapping[str, Any]) -> dict[str, Any]:
    """A GraphQL entitlement in the REST shape :func:`parse_entitlements` reads.

    The older ``Entitlement`` type gives ``validUntil`` as epoch milliseconds.
    """
    if item.get("__typename") == "CreditEntitlement":
        return {**item, "type": "CREDIT"}
    feature = item.get("feature")
    if isinstance(feature, Mapping):
        feature = {**feature, "id": feature.get("refId", feature.get("id"))}
    valid_until = item.get("validUntil")
    if isinstance(valid_until, int | float) and not isinstance(valid_until, bool):
        try:
            valid_until = datetime.fromtimestamp(valid_until / 1000, UTC).isoformat()
        except (OverflowError, OSError, ValueError):
            raise InvalidResponseError(f"validUntil: {valid_until!r} is not a time") from None
    return {**item, "type": "FEATURE", "feature": feature, "validUntil": valid_until}


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def feature_to_json(entitlement: FeatureEntitlement) -> dict[str, Any]:
    """One feature entitlement in Stigg's REST shape."""
    item: dict[str, Any] = {
        "type": "FEATURE",
        "isGranted": entitlement.is_granted,
        "accessDeniedReason": entitlement.access_denied_reason,
        "currentUsage": entitlement.current_usage,
        "usageLimit": entitlement.usage_limit,
        "hasUnlimitedUsage": entitlement.has_unlimited_usage,
        "hasSoftLimit": entitlement.has_soft_limit,
        "resetPeriod": entitlement.reset_period,
        "entitlementUpdatedAt": _iso(entitlement.entitlement_updated_at),
        "usagePeriodAnchor": _iso(entitlement.usage_period_anchor),
        "usagePeriodStart": _iso(entitlement.usage_period_start),
        "usagePeriodEnd": _iso(entitlement.usage_period_end),
        "validUntil": _iso(entitlement.valid_until),
        "feature": {
            "id": entitlement.feature_id,
            "displayName": entitlement.display_name,
            "featureStatus": "ACTIVE",
            "featureType": entitlement.feature_type,
        },
    }
    if entitlement.enum_values is not None:
        item["enumValues"] = list(entitlement.enum_values)
    return {key: value for key, value in item.items() if value is not None}


def credit_to_json(credit: CreditEntitlement, *, updated_at: datetime) -> dict[str, Any]:
    """One credit entitlement in Stigg's REST shape."""
    return {
        "type": "CREDIT",
        "isGranted": credit.is_granted,
        "accessDeniedReason": credit.access_denied_reason,
        "currency": {
            "currencyId": credit.currency_id,
            "displayName": credit.display_name,
        },
        "currentUsage": credit.current_usage,
        "usageLimit": credit.usage_limit,
        "usageUpdatedAt": updated_at.isoformat(),
        "usagePeriodEnd": _iso(credit.usage_period_end),
        "validUntil": _iso(credit.valid_until),
    }


def snapshot_to_json(snapshot: Snapshot, *, updated_at: datetime) -> dict[str, Any]:
    """A snapshot as the ``data`` object of ``GET .../entitlements``."""
    items = [feature_to_json(e) for e in snapshot.entitlements.values()]
    items += [credit_to_json(c, updated_at=updated_at) for c in snapshot.credits.values()]
    return {"accessDeniedReason": snapshot.access_denied_reason, "entitlements": items}


UsageCounts = dict[tuple[str, str | None, str], float]
"""Stigg's usage of a feature (``currentUsage``) by customer, resource and feature id."""


def usage_counts(items: object) -> UsageCounts:
    """What Stigg answered a usage report with: each feature's ``currentUsage`` after it.

    ``items`` is the answer's list of usages (REST ``data.usages``, GraphQL
    ``reportUsageBulk``). Several items of one feature keep the highest (the
    usage once all of them counted). Items of another shape are skipped: this
    is evidence that helps, never a reason to fail an acknowledged send.
    """
    counts: UsageCounts = {}
    for item in items if isinstance(items, list) else ():
        if not isinstance(item, Mapping):
            continue
        customer, resource = item.get("customerId"), item.get("resourceId")
        feature, used = item.get("featureId"), item.get("currentUsage")
        if (
            isinstance(customer, str)
            and isinstance(feature, str)
            and (resource is None or isinstance(resource, str))
            and isinstance(used, int | float)
            and not isinstance(used, bool)
        ):
            scope = (customer, resource, feature)
            counts[scope] = max(float(used), counts.get(scope, float("-inf")))
    return counts
