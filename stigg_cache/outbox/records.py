"""Usage records as the caller hands them over: validated, stamped, serialised.

Validation happens before anything is enqueued, so a rejected call leaves the
outbox untouched. The idempotency key and the timestamp (``timestamp`` for
events, ``createdAt`` for usage) are fixed here, at enqueue time: Stigg
deduplicates events on (timestamp, customer, resource, event name, key), so a
replay stamped anew would count twice.
"""

from __future__ import annotations

import enum
import functools
import json
import math
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

import attrs

MAX_EVENT_BYTES = 1_000_000  # Stigg's limit per event
MAX_FRACTIONAL_VALUE = 2.0**35  # Stigg: a value with a fractional part must be below 2^35
MAX_WHOLE_VALUE = 2.0**53 - 1  # Stigg: whole numbers up to 9,007,199,254,740,991
MAX_ID_CHARS = 1_000

EVENT_FIELDS = frozenset(
    {"customer_id", "event_name", "idempotency_key", "dimensions", "resource_id", "timestamp"}
)
USAGE_FIELDS = frozenset(
    {
        "customer_id",
        "feature_id",
        "value",
        "update_behavior",
        "idempotency_key",
        "resource_id",
        "dimensions",
        "created_at",
    }
)
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _c_encoder() -> Callable[[object, int], Sequence[str]] | None:
    """CPython's C encoder, built once.

    ``JSONEncoder.encode`` builds it anew on every call: a bulk report of
    1,000 events spent a third of its time there. Other interpreters use
    ``_ENCODER``.
    """
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return None
    sort_keys = skip_keys = allow_nan = False
    encoder: Callable[[object, int], Sequence[str]] = make(
        None,
        _ENCODER.default,
        json.encoder.encode_basestring,
        None,
        ":",
        ",",
        sort_keys,
        skip_keys,
        allow_nan,
    )
    return encoder


_C_ENCODER = _c_encoder()
_SURELY_SMALL_CHARS = MAX_EVENT_BYTES // 4  # UTF-8 takes at most 4 bytes a character
DimensionValue = str | float | bool
UpdateBehavior = Literal["DELTA", "SET"]


class RecordKind(enum.Enum):
    """What a record is sent as."""

    EVENT = "event"  # POST /api/v1/events
    USAGE = "usage"  # POST /api/v2/usage


@attrs.frozen
class UsageRecord:
    """One event or usage measurement, ready for the outbox.

    Attributes:
        name: the event name (events) or the feature id (usage).
        value: the usage value; 1 for events.
        stamped_at: wall time (epoch seconds) of ``timestamp`` / ``createdAt``.
        payload: the JSON body item in Stigg's wire shape, exactly as sent.
    """

    kind: RecordKind
    idempotency_key: str
    customer_id: str
    resource_id: str | None
    name: str
    value: float
    update_behavior: UpdateBehavior | None
    dimensions: Mapping[str, DimensionValue]
    stamped_at: float
    payload: str


@attrs.frozen
class Receipt:
    """Proof that a record is durable in the outbox.

    Attributes:
        duplicate: the same key and payload were already enqueued; nothing was added.
    """

    idempotency_key: str
    kind: RecordKind
    customer_id: str
    duplicate: bool = False


def _text(name: str, value: object, *, required: bool = True) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, got {type(value).__name__}")
    if not value or value.isspace() or len(value) > MAX_ID_CHARS:
        raise ValueError(f"{name} must be a non-empty string of at most {MAX_ID_CHARS} characters")
    return value


def _stamp(name: str, value: object, now: float) -> float:
    if value is None:
        return now
    if isinstance(value, str):
        text = value
        try:
            value = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"{name} must be an ISO-8601 time, got {text[:40]!r}") from None
    if not isinstance(value, datetime):
        raise TypeError(f"{name} must be a datetime or an ISO-8601 string")
    if value.tzinfo is None:
        raise ValueError(f"{name} must carry a timezone, e.g. datetime.now(timezone.utc)")
    return value.timestamp()


def _dimensions(value: object) -> dict[str, DimensionValue]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TypeError("dimensions must be a dict of str to str, number or bool")
    result: dict[str, DimensionValue] = {}
    for key, item in value.items():
        if not isinstance(key, str) or not key:
            raise TypeError("dimension names must be non-empty strings")
        if isinstance(item, int | float) and not isinstance(item, bool) and not math.isfinite(item):
            raise ValueError(f"dimension {key!r} must be finite")
        if not isinstance(item, str | int | float | bool):
            raise TypeError(f"dimension {key!r} must be a str, number or bool")
        result[key] = item
    return result


def _value(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"value must be a number, got {type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError("value must be finite")
    whole = float(value).is_integer()
    if abs(value) > (MAX_WHOLE_VALUE if whole else MAX_FRACTIONAL_VALUE):
        raise ValueError("value is outside what Stigg accepts (|v| < 2^35, or whole and < 2^53)")
    return float(value)


def _fields(raw: object, what: str, allowed: frozenset[str]) -> Mapping[str, Any]:
    if not isinstance(raw, dict | Mapping):  # dict first: the ABC check is slow
        raise TypeError(f"each {what} must be a dict with {', '.join(sorted(allowed))}")
    if not raw.keys() <= allowed:
        unknown = sorted(set(raw) - allowed)
        raise ValueError(f"unknown {what} fields {unknown}; allowed: {sorted(allowed)}")
    return raw


def _key(raw: Mapping[str, Any]) -> str:
    given = _text("idempotency_key", raw.get("idempotency_key"), required=False)
    return given or str(uuid.uuid4())


@functools.lru_cache(maxsize=64)
def _iso(stamped_at: float) -> str:
    # Events of one call share "now": formatting it once per call is plenty.
    return datetime.fromtimestamp(stamped_at, UTC).isoformat()


def _serialise(body: dict[str, Any]) -> str:
    # Keys in a fixed order: the body's own.
    payload = _ENCODER.encode(body) if _C_ENCODER is None else "".join(_C_ENCODER(body, 0))
    if len(payload) > _SURELY_SMALL_CHARS and len(payload.encode()) > MAX_EVENT_BYTES:
        raise ValueError(f"a record may be at most {MAX_EVENT_BYTES} bytes once encoded")
    return payload


def event_record(event: Mapping[str, Any], now: float) -> UsageRecord:
    """Validate one raw event given as a dict with Stigg's snake_case names."""
    event = _fields(event, "event", EVENT_FIELDS)
    customer_id = _text("customer_id", event.get("customer_id"))
    event_name = _text("event_name", event.get("event_name"))
    key = _key(event)
    resource_id = _text("resource_id", event.get("resource_id"), required=False)
    dimensions = _dimensions(event.get("dimensions"))
    stamped_at = _stamp("timestamp", event.get("timestamp"), now)
    assert customer_id is not None
    assert event_name is not None
    body = {
        "customerId": customer_id,
        "eventName": event_name,
        "idempotencyKey": key,
        "dimensions": dimensions,
        "resourceId": resource_id,
        "timestamp": _iso(stamped_at),
    }
    return UsageRecord(
        RecordKind.EVENT,
        key,
        customer_id,
        resource_id,
        event_name,
        1.0,
        None,
        dimensions,
        stamped_at,
        _serialise(body),
    )


def usage_record(usage: Mapping[str, Any], now: float) -> UsageRecord:
    """Validate one usage measurement given as a dict with Stigg's snake_case names."""
    usage = _fields(usage, "usage", USAGE_FIELDS)
    customer_id = _text("customer_id", usage.get("customer_id"))
    feature_id = _text("feature_id", usage.get("feature_id"))
    value = _value(usage.get("value"))
    behavior: UpdateBehavior
    match usage.get("update_behavior") or "DELTA":
        case "DELTA":
            behavior = "DELTA"
        case "SET":
            behavior = "SET"
        case other:
            raise ValueError(f"update_behavior must be 'DELTA' or 'SET', got {other!r}")
    key = _key(usage)
    resource_id = _text("resource_id", usage.get("resource_id"), required=False)
    dimensions = _dimensions(usage.get("dimensions"))
    stamped_at = _stamp("created_at", usage.get("created_at"), now)
    assert customer_id is not None
    assert feature_id is not None
    body = {
        "customerId": customer_id,
        "featureId": feature_id,
        "value": value,
        "updateBehavior": behavior,
        "idempotencyKey": key,
        "createdAt": _iso(stamped_at),
        "dimensions": dimensions,
        "resourceId": resource_id,
    }
    return UsageRecord(
        RecordKind.USAGE,
        key,
        customer_id,
        resource_id,
        feature_id,
        value,
        behavior,
        dimensions,
        stamped_at,
        _serialise(body),
    )


def record_from_payload(kind: RecordKind, payload: str, stamped_at: float) -> UsageRecord:
    """Rebuild a record from the wire payload an outbox stored (it holds every field).

    Raises:
        ValueError: the payload is not one :func:`event_record` / :func:`usage_record` wrote.
    """
    try:
        body = json.loads(payload)
        common = (body["idempotencyKey"], body["customerId"], body.get("resourceId"))
        if kind is RecordKind.EVENT:
            named: tuple[str, float, UpdateBehavior | None] = (body["eventName"], 1.0, None)
        else:
            named = (body["featureId"], float(body["value"]), body["updateBehavior"])
        return UsageRecord(kind, *common, *named, body.get("dimensions") or {}, stamped_at, payload)
    except (KeyError, TypeError, ValueError, RecursionError) as error:
        raise ValueError(f"not a stored {kind.value} record: {error}") from error
