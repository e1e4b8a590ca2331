"""Records: the payload is exactly Stigg's JSON, and a record is rebuilt from it alone."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from stigg_cache.errors import InvalidTypeError, InvalidValueError
from stigg_cache.outbox.records import (
    RecordKind,
    event_record,
    event_records,
    record_from_payload,
    usage_record,
)

NOW = 1_800_000_000.25


@pytest.mark.parametrize(
    "dimensions",
    [{}, {"region": "eu", "n": 3, "ratio": 0.1, "ok": True}, {"ünïcode": 'quote " \\ \n tab\t'}],
)
def test_payloads_are_compact_json_and_records_round_trip(dimensions: dict[str, object]) -> None:
    event = event_record(
        {"customer_id": "c", "event_name": "é", "resource_id": "r", "dimensions": dimensions}, NOW
    )
    usage = usage_record(
        {"customer_id": "c", "feature_id": "f", "value": 2.5, "update_behavior": "SET"}, NOW
    )
    for record in (event, usage):
        body = json.loads(record.payload)
        assert record.payload == json.dumps(body, separators=(",", ":"), ensure_ascii=False)
        assert record_from_payload(record.kind, record.payload, record.stamped_at) == record


@pytest.mark.parametrize("payload", ["", "[]", "{}", '{"idempotencyKey": 1}', "[" * 100_000])
def test_a_payload_we_did_not_write_is_a_value_error(payload: str) -> None:
    with pytest.raises(ValueError, match="not a stored event record"):
        record_from_payload(RecordKind.EVENT, payload, NOW)


def test_a_bulk_report_writes_each_event_as_stigg_s_json() -> None:
    batch: list[dict[str, object]] = [
        {"customer_id": "c1", "event_name": "e", "idempotency_key": "k1"},
        {"customer_id": "c1", "event_name": "e", "idempotency_key": "k2", "dimensions": {}},
        {"customer_id": "c2", "event_name": "e", "idempotency_key": "k3", "dimensions": {"n": 1}},
        {"customer_id": "c1", "event_name": "f", "idempotency_key": "k4", "resource_id": "r"},
        {"customer_id": "c1", "event_name": "e", "idempotency_key": "k5",
         "timestamp": "2027-01-15T08:00:00+00:00"},
        {"customer_id": "c2", "event_name": 'é "q"', "idempotency_key": "k6"},
    ]  # fmt: skip
    records = event_records(batch, NOW)
    assert [r.idempotency_key for r in records] == ["k1", "k2", "k3", "k4", "k5", "k6"]
    for event, record in zip(batch, records, strict=True):
        stamp = event.get("timestamp") or datetime.fromtimestamp(NOW, UTC).isoformat()
        expected = {
            "customerId": event["customer_id"],
            "eventName": event["event_name"],
            "idempotencyKey": event["idempotency_key"],
            "dimensions": event.get("dimensions") or {},
            "resourceId": event.get("resource_id"),
            "timestamp": stamp,
        }
        assert record.payload == json.dumps(expected, separators=(",", ":"), ensure_ascii=False)
        assert (record.customer_id, record.name) == (event["customer_id"], event["event_name"])
        assert record.stamp_given == ("timestamp" in event)
        assert record_from_payload(record.kind, record.payload, record.stamped_at) == record


@pytest.mark.parametrize(
    ("customer_id", "error"),
    [("", InvalidValueError), (" ", InvalidValueError), (1, InvalidTypeError),
     (["c1"], InvalidTypeError), (None, InvalidTypeError)],
)  # fmt: skip
def test_every_event_of_a_bulk_report_is_checked_whatever_came_before_it(
    customer_id: object, error: type[Exception]
) -> None:
    """A customer and event name seen before in the call are not checked again: any other
    value still is, hashable or not."""
    batch: list[dict[str, object]] = [
        {"customer_id": "c1", "event_name": "e"},
        {"customer_id": customer_id, "event_name": "e"},
    ]
    with pytest.raises(error, match="customer_id"):
        event_records(batch, NOW)
    with pytest.raises(error, match="event_name"):
        event_records([{"customer_id": "c1", "event_name": "e"},
                       {"customer_id": "c1", "event_name": customer_id}], NOW)  # fmt: skip
