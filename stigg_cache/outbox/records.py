"""Usage records as the caller hands them over: validated, stamped, serialised.

Validation happens before anything is enqueued, so a rejected call leaves the
outbox untouched. The idempotency key and the timestamp (``timestamp`` for
events, ``createdAt`` for usage) are fixed here, at enqueue time: Stigg
deduplicates events on (timestamp, customer, resource, event name, key), so a
replay stamped anew would count twice.

An idempotency key belongs to its customer: the same key for two customers is
two records. A call repeated with the same key whose stamp the caller left to
us is a retry of the first record (it was stamped then), not other usage.
"""

from __future__ import annotations

import enum
import functools
import json
import re
import uuid
from collections.abc import Container, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Literal

import attrs

from stigg_cache.core.validate import encodable, finite_number, opt_id, require_id
from stigg_cache.errors import InvalidTypeError, InvalidValueError
from stigg_cache.models import MeteredEntitlement

MAX_EVENT_BYTES = 1_000_000  # Stigg's limit per event
MAX_FRACTIONAL_VALUE = 2.0**35  # Stigg: a value with a fractional part must be below 2^35
MAX_WHOLE_VALUE = 2.0**53 - 1  # Stigg: whole numbers up to 9,007,199,254,740,991
MAX_DIMENSIONS = 100  # ours: per record (Stigg publishes no limit; a meter reads a few)
MAX_DIMENSION_NAME_CHARS = 256
MAX_DIMENSION_TEXT_CHARS = 10_000

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
_quote = json.encoder.encode_basestring  # a JSON string literal (C-accelerated); not ASCII-only
_SURELY_SMALL_CHARS = MAX_EVENT_BYTES // 4  # UTF-8 takes at most 4 bytes a character
DimensionValue = str | float | bool
UpdateBehavior = Literal["DELTA", "SET"]


class RecordKind(enum.Enum):
    """What a record is sent as."""

    EVENT = "event"  # POST /api/v1/events
    USAGE = "usage"  # POST /api/v2/usage


_EVENT, _USAGE = RecordKind.EVENT, RecordKind.USAGE  # globals: a member's lookup runs Python


@attrs.define
class UsageRecord:
    """One event or usage measurement, ready for the outbox. Treat it as read-only.

    Not ``frozen``: a bulk report builds thousands per call, and a frozen
    attrs instance costs four times as much to build.

    Attributes:
        name: the event name (events) or the feature id (usage).
        value: the usage value; 1 for events.
        stamped_at: wall time (epoch seconds) of ``timestamp`` / ``createdAt``.
        payload: the JSON body item in Stigg's wire shape, exactly as sent.
        stamp_given: the caller gave ``timestamp`` / ``createdAt``; if not, a repeat
            of the call (stamped anew) is the same usage (:func:`same_usage`).
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
    stamp_given: bool = attrs.field(default=True, eq=False)  # how it was made, not what it is

    def counts_locally(self, counted_events: Container[str]) -> bool:
        """Whether this record can count as local usage: usage always, an event only if a
        meter maps it to a feature (its name in ``counted_events``)."""
        return self.kind is _USAGE or self.name in counted_events


@attrs.define
class Receipt:
    """Proof that a record is durable in the outbox (read-only; not frozen for speed, as above).

    Attributes:
        duplicate: the same key and payload were already enqueued; nothing was added.
    """

    idempotency_key: str
    kind: RecordKind
    customer_id: str
    duplicate: bool = False


@attrs.frozen
class Consumption:
    """What ``consume()`` did.

    Attributes:
        granted: the units fitted and their usage is durable in the outbox.
        entitlement: the metered answer the decision was made on (with its
            decision: source, age, rule), counting every process's usage.
        receipt: the enqueued usage's receipt; ``None`` when not granted.
    """

    granted: bool
    entitlement: MeteredEntitlement
    receipt: Receipt | None


def _stamp(name: str, value: object, now: float) -> float:
    if value is None:
        return now
    if isinstance(value, str):
        text = value
        try:
            value = datetime.fromisoformat(text)
        except ValueError:
            raise InvalidValueError(f"{name} must be an ISO-8601 time, got {text[:40]!r}") from None
    if not isinstance(value, datetime):
        raise InvalidTypeError(f"{name} must be a datetime or an ISO-8601 string")
    if value.tzinfo is None:
        raise InvalidValueError(f"{name} must carry a timezone, e.g. datetime.now(timezone.utc)")
    return value.timestamp()


def _dimensions(value: object) -> dict[str, DimensionValue]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidTypeError("dimensions must be a dict of str to str, number or bool")
    if len(value) > MAX_DIMENSIONS:
        raise InvalidValueError(f"at most {MAX_DIMENSIONS} dimensions a record, got {len(value)}")
    result: dict[str, DimensionValue] = {}
    for key, item in value.items():
        if not isinstance(key, str) or not key:
            raise InvalidTypeError("dimension names must be non-empty strings")
        if len(key) > MAX_DIMENSION_NAME_CHARS:
            raise InvalidValueError(
                f"dimension names are at most {MAX_DIMENSION_NAME_CHARS} characters"
            )
        result[encodable("dimension names", key)] = _dimension(key, item)
    return result


def _dimension(key: str, item: object) -> DimensionValue:
    name = f"dimension {key[:40]!r}"
    if isinstance(item, bool):
        return item
    if isinstance(item, str):
        if len(item) > MAX_DIMENSION_TEXT_CHARS:
            raise InvalidValueError(
                f"{name}: text values are at most {MAX_DIMENSION_TEXT_CHARS} characters"
            )
        return encodable(name, item)
    if isinstance(item, int | float):
        finite_number(name, item)
        return item
    raise InvalidTypeError(f"{name} must be a str, number or bool")


def _value(value: object) -> float:
    number = finite_number("value", value)
    if abs(number) > (MAX_WHOLE_VALUE if number.is_integer() else MAX_FRACTIONAL_VALUE):
        raise InvalidValueError(
            "value is outside what Stigg accepts (|v| < 2^35, or whole and < 2^53)"
        )
    return number


def _fields(raw: object, what: str, allowed: frozenset[str]) -> Mapping[str, Any]:
    if type(raw) is not dict and not isinstance(raw, Mapping):  # the ABC check is slow
        raise InvalidTypeError(f"each {what} must be a dict with {', '.join(sorted(allowed))}")
    if not allowed.issuperset(raw):
        unknown = sorted(set(raw) - allowed)
        raise InvalidValueError(f"unknown {what} fields {unknown}; allowed: {sorted(allowed)}")
    return raw


def _key(given: object) -> str:
    return str(uuid.uuid4()) if given is None else require_id("idempotency_key", given)


@functools.lru_cache(maxsize=64)
def _iso(stamped_at: float) -> str:
    # Events of one call share "now": formatting it once per call is plenty.
    return datetime.fromtimestamp(stamped_at, UTC).isoformat()


# Payloads are Stigg's JSON, compact, keys in a fixed order. They are written
# from templates rather than by json.dumps of a dict: a bulk report of 1,000
# events spent a third of its time in the encoder's per-call set-up. Strings go
# through json's own escaping; tests check the result equals json.dumps's.


def _null_or_quote(value: str | None) -> str:
    return "null" if value is None else _quote(value)


def _object(dimensions: Mapping[str, DimensionValue]) -> str:
    return _ENCODER.encode(dimensions) if dimensions else "{}"


def encoded_size(document: Mapping[str, Any]) -> int:
    """Bytes of an event or usage as sent: compact JSON, UTF-8 (Stigg's 1 MB is of these)."""
    return len(_ENCODER.encode(document).encode())


def _sized(payload: str) -> str:
    if len(payload) > _SURELY_SMALL_CHARS and len(payload.encode()) > MAX_EVENT_BYTES:
        raise InvalidValueError(f"a record may be at most {MAX_EVENT_BYTES} bytes once encoded")
    return payload


def event_record(event: Mapping[str, Any], now: float) -> UsageRecord:
    """Validate one raw event given as a dict with Stigg's snake_case names."""
    return event_records([event], now)[0]


def event_records(events: Iterable[Mapping[str, Any]], now: float) -> list[UsageRecord]:
    """Validate one call's raw events (each a dict with Stigg's snake_case names), in order.

    One loop, its common case inline: a bulk report builds thousands. A call names few
    customers and event names, so a pair seen before in it is not checked or quoted
    again; a payload with no dimensions, resource or timestamp ends the same for all.
    """
    heads: dict[tuple[str, str], _Head] = {}  # valid (customer, event name) pairs seen
    plain_tail = _event_tail({}, None, now)
    records: list[UsageRecord] = []
    for event in events:
        if type(event) is not dict or not EVENT_FIELDS.issuperset(event):
            _fields(event, "event", EVENT_FIELDS)  # a Mapping of known fields, or why not
        customer_id: object = event.get("customer_id")
        event_name: object = event.get("event_name")
        seen = None
        if (
            type(customer_id) is str and type(event_name) is str
        ):  # exactly: a str subclass may hash otherwise
            seen = heads.get((customer_id, event_name))
        customer, name, head = seen or _event_head(heads, customer_id, event_name)
        key = _key(event.get("idempotency_key"))
        resource_id, dimensions = event.get("resource_id"), event.get("dimensions")
        given = event.get("timestamp")
        if resource_id is None and dimensions is None and given is None:
            stamped_at, dimensions, tail = now, {}, plain_tail
        else:
            resource_id, dimensions, stamped_at, tail = _event_extras(event, now)
        payload = f'{head}"idempotencyKey":{_quote(key)},{tail}'
        if len(payload) > _SURELY_SMALL_CHARS:
            _sized(payload)
        record = UsageRecord(
            _EVENT, key, customer, resource_id, name, 1.0, None, dimensions, stamped_at,
            payload, given is not None,
        )  # fmt: skip
        records.append(record)
    return records


# A (customer, event name) pair checked, with the head of its payloads.
_Head = tuple[str, str, str]


def _event_head(heads: dict[tuple[str, str], _Head], customer_id: object, name: object) -> _Head:
    """Check a (customer, event name) pair, and remember it with its payloads' head."""
    customer = require_id("customer_id", customer_id)
    event_name = require_id("event_name", name)
    head = f'{{"customerId":{_quote(customer)},"eventName":{_quote(event_name)},'
    made = heads[customer, event_name] = (customer, event_name, head)
    return made


def _event_extras(
    event: Mapping[str, Any], now: float
) -> tuple[str | None, dict[str, DimensionValue], float, str]:
    """An event's resource, dimensions and stamp, checked; and its payload's end."""
    resource_id = opt_id("resource_id", event.get("resource_id"))
    dimensions = _dimensions(event.get("dimensions"))
    stamped_at = _stamp("timestamp", event.get("timestamp"), now)
    return resource_id, dimensions, stamped_at, _event_tail(dimensions, resource_id, stamped_at)


def _event_tail(
    dimensions: Mapping[str, DimensionValue], resource_id: str | None, stamped_at: float
) -> str:
    return (
        f'"dimensions":{_object(dimensions)},"resourceId":{_null_or_quote(resource_id)},'
        f'"timestamp":"{_iso(stamped_at)}"}}'
    )


def usage_record(usage: Mapping[str, Any], now: float) -> UsageRecord:
    """Validate one usage measurement given as a dict with Stigg's snake_case names."""
    usage = _fields(usage, "usage", USAGE_FIELDS)
    customer_id = require_id("customer_id", usage.get("customer_id"))
    feature_id = require_id("feature_id", usage.get("feature_id"))
    value = _value(usage.get("value"))
    behavior: UpdateBehavior
    match usage.get("update_behavior") or "DELTA":
        case "DELTA":
            behavior = "DELTA"
        case "SET":
            behavior = "SET"
        case other:
            raise InvalidValueError(f"update_behavior must be 'DELTA' or 'SET', got {other!r}")
    key = _key(usage.get("idempotency_key"))
    resource_id = opt_id("resource_id", usage.get("resource_id"))
    dimensions = _dimensions(usage.get("dimensions"))
    given = usage.get("created_at")
    stamped_at = _stamp("created_at", given, now)
    payload = (
        f'{{"customerId":{_quote(customer_id)},"featureId":{_quote(feature_id)},'
        f'"value":{value!r},"updateBehavior":"{behavior}","idempotencyKey":{_quote(key)},'
        f'"createdAt":"{_iso(stamped_at)}","dimensions":{_object(dimensions)},'
        f'"resourceId":{_null_or_quote(resource_id)}}}'
    )
    return UsageRecord(
        _USAGE,
        key,
        customer_id,
        resource_id,
        feature_id,
        value,
        behavior,
        dimensions,
        stamped_at,
        _sized(payload),
        given is not None,
    )


def usage_records(usages: Iterable[Mapping[str, Any]], now: float) -> list[UsageRecord]:
    """Validate one call's usage measurements (each as :func:`usage_record` does), in order."""
    return [usage_record(usage, now) for usage in usages]


def scoped_key(customer_id: str, idempotency_key: str) -> str:
    """How outboxes store a key: scoped to its customer (two customers' keys never meet).

    Ambiguous only for ids holding a newline, where two customers' records could share
    it: the second is then refused as a reused key (their payloads differ), never lost.
    """
    return f"{customer_id}\n{idempotency_key}"


# The stamp in a payload as the templates above write it: a usage record's ``createdAt``
# is its first field of that name (before the dimensions), an event's ``timestamp`` its
# last field. A string holds no bare quote, so neither pattern matches inside one.
_STAMPS = {
    RecordKind.USAGE: (re.compile(r',"createdAt":"[^"]*"'), ""),
    RecordKind.EVENT: (re.compile(r',"timestamp":"[^"]*"\}$'), "}"),
}


def same_usage(stored_payload: str, record: UsageRecord) -> bool:
    """Whether a payload stored under ``record``'s key is ``record`` again: the same, or,
    when the caller left the stamp to us, the same but for it (a retry stamped anew)."""
    if stored_payload == record.payload:
        return True
    if record.stamp_given:
        return False
    pattern, end = _STAMPS[record.kind]
    return pattern.sub(end, stored_payload, 1) == pattern.sub(end, record.payload, 1)


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


def unreadable_record(kind: str, key: str, stamped_at: float, payload: str) -> UsageRecord:
    """A stand-in for a stored record that does not decode, so a dead letter can show it."""
    as_kind = RecordKind.USAGE if kind == RecordKind.USAGE.value else RecordKind.EVENT
    return UsageRecord(as_kind, str(key), "?", None, "?", 0.0, None, {}, stamped_at, str(payload))
