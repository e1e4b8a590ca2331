"""The snapshot codec round-trips and rejects every damaged value as corrupt."""

from __future__ import annotations

import json
import struct
import zlib
from datetime import UTC, datetime

import pytest

from stigg_cache.adapters._stigg_json import LazyEntitlements
from stigg_cache.errors import CorruptEntryError, InvalidResponseError
from stigg_cache.models import CreditEntitlement, FeatureEntitlement, Snapshot
from stigg_cache.stores._codec import (
    MAGIC,
    OutdatedEntryError,
    decode_snapshot,
    encode_snapshot,
    pack,
    snapshot_key,
)

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
        pytest.param(_frame(json.dumps({"v": 5}).encode() + b"\n"), id="future-version"),
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


def _raw_entry(ids: object, ends: list[int], blobs: bytes) -> bytes:
    """An entry as the codec lays it out, with any feature table."""
    header = {"v": 4, "customerId": "c", "resourceId": None, "fetchedAt": 1.0, "features": ids}
    table = struct.pack(f">{len(ends)}I", *ends)
    return _frame(json.dumps(header).encode() + b"\n" + table + blobs)


@pytest.mark.parametrize(
    ("ids", "ends", "blobs", "message"),
    [
        (["f", "g"], [999, 2], b"{}", "malformed location"),  # past the end
        (["g", "f", "h"], [2, 1, 2], b"{}", "malformed location"),  # ends before it starts
        (["f"], [2], b"{[", "not JSON"),
        (["f"], [2], b"[]", "expected an object"),
    ],
)
def test_a_feature_whose_location_or_bytes_are_wrong_surfaces_on_access(
    ids: list[str], ends: list[int], blobs: bytes, message: str
) -> None:
    decoded = decode_snapshot(_raw_entry(ids, ends, blobs))
    with pytest.raises(InvalidResponseError, match=message):
        decoded.entitlements.get("f")


@pytest.mark.parametrize(
    ("ids", "ends", "blobs"),
    [
        pytest.param(["f"], [3], b"{}", id="features-short-of-the-end"),
        pytest.param(["f"], [1], b"{}", id="bytes-after-the-features"),
        pytest.param(["f", "g"], [2], b"{}", id="table-cut-short"),
        pytest.param([5], [2], b"{}", id="id-not-a-string"),
        pytest.param([["f"]], [2], b"{}", id="id-unhashable"),
        pytest.param({"f": [0, 2]}, [], b"{}", id="codec-3-spans"),
    ],
)
def test_a_feature_table_that_does_not_match_its_bytes_is_a_corrupt_entry(
    ids: object, ends: list[int], blobs: bytes
) -> None:
    with pytest.raises(CorruptEntryError):
        decode_snapshot(_raw_entry(ids, ends, blobs))


@pytest.mark.parametrize("magic", [b"SCS2", b"SCS3"])
def test_an_earlier_codecs_entry_is_outdated_not_corrupt(magic: bytes) -> None:
    with pytest.raises(OutdatedEntryError):
        decode_snapshot(magic + encode_snapshot(SNAPSHOT)[4:])


def test_features_are_found_by_id_in_any_order_and_absent_ones_are_not() -> None:
    decoded = decode_snapshot(encode_snapshot(SNAPSHOT)).entitlements
    assert decoded.get("models") == SNAPSHOT.entitlements["models"]  # the second, read first
    assert decoded["api_calls"] == SNAPSHOT.entitlements["api_calls"]
    assert "nope" not in decoded
    assert decoded.get("nope") is None
    with pytest.raises(KeyError):
        decoded["nope"]
    assert len(decoded) == 2
