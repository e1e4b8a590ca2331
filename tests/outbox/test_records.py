"""Records: the payload is exactly Stigg's JSON, and a record is rebuilt from it alone."""

from __future__ import annotations

import json

import pytest

from stigg_cache.outbox.records import (
    RecordKind,
    event_record,
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
