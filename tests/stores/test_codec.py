"""The snapshot codec round-trips and rejects every damaged value as corrupt."""

from __future__ import annotations

import json
import struct
import zlib
from datetime import UTC, datetime

import pytest

from stigg_cache._codec import MAGIC, decode_snapshot, encode_snapshot, pack, snapshot_key
from stigg_cache._stigg_json import LazyEntitlements
from stigg_cache.errors import CorruptEntryError, InvalidResponseError
from stigg_cache.models import CreditEntitlement, FeatureEntitlement, Snapshot

SNAPSHOT = Snapshot(
    customer_id="c-ü",
    resource_id="r-1",
    entitlements={
        "api_calls": FeatureEntitlement(
            "api_calls",
            "NUMBER",
            is_granted=True,
            usage_limit=100.0,
            current_usage=3.5,
            reset_period="MONTH",
            usage_period_end=datetime(2030, 1, 1, tzinfo=UTC),
            valid_until=datetime(2030, 1, 1, 12, tzinfo=UTC),
            display_name="API calls",
        ),
        "models": FeatureEntitlement("models", "ENUM", is_granted=True, enum_values=("a", "b")),
    },
    credits={
        "tokens": CreditEntitlement("tokens", is_granted=True, usage_limit=10, current_usage=2)
    },
    fetched_at=1_700_000_000.25,
    plan_ids=("plan-pro",),
)


def _frame(payload: bytes) -> bytes:
    return struct.pack(">4sII", MAGIC, len(payload), zlib.crc32(payload)) + payload


def test_snapshot_round_trips() -> None:
    assert decode_snapshot(encode_snapshot(SNAPSHOT)) == SNAPSHOT


def test_keys_hash_ids_so_no_customer_id_names_a_file() -> None:
    key = snapshot_key("../../etc/passwd", None)
    assert key.startswith("snapshot:")
    assert "/" not in key
    assert snapshot_key("a", None) != snapshot_key("a", "r")


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"SCS1", id="header-only"),
        pytest.param(encode_snapshot(SNAPSHOT)[:-3], id="truncated"),
        pytest.param(encode_snapshot(SNAPSHOT) + b"x", id="extended"),
        pytest.param(b"XXXX" + encode_snapshot(SNAPSHOT)[4:], id="wrong-magic"),
        pytest.param(_frame(b"not json\n"), id="not-json"),
        pytest.param(_frame(b"[1]\n"), id="not-an-object"),
        pytest.param(_frame(b'{"v": 3}'), id="no-header-line"),
        pytest.param(_frame(json.dumps({"v": 4}).encode() + b"\n"), id="future-version"),
        pytest.param(
            b"SCS2" + encode_snapshot(SNAPSHOT)[4:], id="previous-version"
        ),  # read as a miss, then replaced
        pytest.param(_frame(b"[" * 100_000 + b"]" * 100_000 + b"\n"), id="deep-nesting"),
        pytest.param(
            pack({"customerId": 5, "resourceId": None, "fetchedAt": 1, "data": {}}, {}),
            id="bad-id-type",
        ),
        *(
            pytest.param(
                pack({"customerId": "c", "resourceId": None, "fetchedAt": at, "data": {}}, {}),
                id=f"fetch-time-{at}",
            )
            for at in (1e300, -1, float("inf"), float("nan"))  # found by fuzzing: 1e300
        ),
        pytest.param(
            pack(
                {
                    "customerId": "c",
                    "resourceId": None,
                    "fetchedAt": 1,
                    "data": {"entitlements": [{"type": "CREDIT", "isGranted": "yes"}]},
                },
                {},
            ),
            id="bad-entitlement",
        ),
    ],
)
def test_damaged_values_are_corrupt_entries(value: bytes) -> None:
    with pytest.raises(CorruptEntryError):
        decode_snapshot(value)


def test_a_flipped_byte_anywhere_is_detected() -> None:
    value = encode_snapshot(SNAPSHOT)
    for index in range(0, len(value), 7):
        damaged = value[:index] + bytes([value[index] ^ 0x01]) + value[index + 1 :]
        with pytest.raises(CorruptEntryError):
            decode_snapshot(damaged)


def test_decoded_snapshots_parse_features_on_access_and_equal_the_original() -> None:
    decoded = decode_snapshot(encode_snapshot(SNAPSHOT))
    assert isinstance(decoded.entitlements, LazyEntitlements)
    assert decoded.entitlements["api_calls"].usage_limit == 100.0
    assert dict(decoded.entitlements) == dict(SNAPSHOT.entitlements)


def test_a_malformed_feature_in_a_well_framed_entry_surfaces_on_access() -> None:
    header: dict[str, object] = {
        "customerId": "c",
        "resourceId": None,
        "fetchedAt": 1.0,
        "data": {"entitlements": []},
    }
    features = {
        "f": {"type": "FEATURE", "isGranted": "yes", "feature": {"id": "f"}},
        "g": {"type": "FEATURE", "isGranted": True, "feature": {"id": "not-g"}},
        "h": {"isGranted": True, "accessDeniedReason": ["Revoked"], "feature": {"id": "h"}},
    }
    decoded = decode_snapshot(pack(header, features))
    assert list(decoded.entitlements) == ["f", "g", "h"]
    with pytest.raises(InvalidResponseError, match="isGranted"):
        decoded.entitlements.get("f")
    with pytest.raises(InvalidResponseError, match="another feature"):
        decoded.entitlements.get("g")
    with pytest.raises(InvalidResponseError, match="expected a string"):  # not a TypeError
        decoded.entitlements.get("h")


@pytest.mark.parametrize(
    ("spans", "blobs", "message"),
    [
        ({"f": [0, 999]}, b"{}", "malformed location"),
        ({"f": [3, 1]}, b"{}", "malformed location"),
        ({"f": "0-2"}, b"{}", "malformed location"),
        ({"f": [0, 2]}, b"{[", "not JSON"),
        ({"f": [0, 2]}, b"[]", "expected an object"),
    ],
)
def test_a_feature_whose_location_or_bytes_are_wrong_surfaces_on_access(
    spans: dict[str, object], blobs: bytes, message: str
) -> None:
    header = {"v": 3, "customerId": "c", "resourceId": None, "fetchedAt": 1.0}
    header |= {"data": {"entitlements": []}, "features": spans}
    decoded = decode_snapshot(_frame(json.dumps(header).encode() + b"\n" + blobs))
    with pytest.raises(InvalidResponseError, match=message):
        decoded.entitlements.get("f")
