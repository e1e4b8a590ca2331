"""The invariants the fuzz targets and the hypothesis tests share: one function per decoder.

Each takes bytes nobody vouched for and must end in a value or the decoder's
documented error; anything else (another exception, a hang, an invalid
object let through) is a bug. atheris drives them from ``fuzz/fuzz_*.py``;
``tests/test_properties.py`` runs them under hypothesis with bounded examples.
"""

from __future__ import annotations

import contextlib
import json
import struct
import zlib
from typing import Any

import attrs

from stigg_cache.adapters._graphql import snapshot_from_state_body
from stigg_cache.adapters._http import json_data, snapshot_from_body
from stigg_cache.errors import (
    CorruptEntryError,
    InvalidResponseError,
    PolicyError,
    StiggUnavailableError,
    TamperedEntryError,
)
from stigg_cache.models import FeatureEntitlement
from stigg_cache.outbox.records import (
    RecordKind,
    event_record,
    record_from_payload,
    usage_record,
)
from stigg_cache.outbox.sqlite import _record as sqlite_record
from stigg_cache.outbox.sqlite import _shown as sqlite_shown
from stigg_cache.policy.model import FallbackPolicy
from stigg_cache.stores._codec import MAGIC, decode_snapshot, encode_snapshot
from stigg_cache.stores.memory import MemoryStore
from stigg_cache.stores.signed import SignedStore
from stigg_cache_redis._records import decode as redis_record

NOW = 1_800_000_000.0
_VERIFIER = SignedStore(MemoryStore(), [b"fuzzing-key-0123456789"])


def policy_bytes(data: bytes) -> None:
    """Any bytes as fallback.yaml: a valid policy, or PolicyError (never a half-built one)."""
    try:
        policy = FallbackPolicy.from_yaml(data, "<fuzz>")
    except PolicyError:
        return
    assert isinstance(policy, FallbackPolicy)
    assert policy.version  # a content hash: what status() reports


def snapshot_value(data: bytes) -> None:
    """Any bytes as a stored snapshot: a Snapshot whose features each parse or raise
    InvalidResponseError, or CorruptEntryError; and a decoded snapshot re-encodes to itself.

    The bytes are tried as a whole value and as a payload in a correct frame
    (else the checksum stops almost every input before the parser sees it).
    """
    for value in (data, MAGIC + struct.pack(">II", len(data), zlib.crc32(data)) + data):
        _one_snapshot_value(value)


def _one_snapshot_value(data: bytes) -> None:
    try:
        snapshot = decode_snapshot(data)
    except CorruptEntryError:
        return
    features = {}
    for feature_id in snapshot.entitlements:
        try:
            features[feature_id] = snapshot.entitlements[feature_id]
        except InvalidResponseError:
            return  # the reader drops the whole entry
        assert isinstance(features[feature_id], FeatureEntitlement)
    whole = attrs.evolve(snapshot, entitlements=features)
    assert decode_snapshot(encode_snapshot(whole)) == whole


def rest_body(data: bytes) -> None:
    """Any bytes as Stigg's entitlements answer (and any other answer): a Snapshot
    with parsed features, or StiggUnavailableError."""
    try:
        json_data(data)
        snapshot = snapshot_from_body(data, "c", None)
    except StiggUnavailableError:
        return
    assert all(isinstance(e, FeatureEntitlement) for e in snapshot.entitlements.values())


def state_body(data: bytes) -> None:
    """Any bytes as an Edge/GraphQL entitlementsState answer: a Snapshot with parsed
    features, or StiggUnavailableError."""
    try:
        snapshot = snapshot_from_state_body(data, "c", None)
    except StiggUnavailableError:
        return
    assert all(isinstance(e, FeatureEntitlement) for e in snapshot.entitlements.values())


def usage_input(data: bytes) -> None:
    """Any JSON as report_event/report_usage input: a record whose payload is valid JSON
    that rebuilds the same record, or TypeError/ValueError (nothing half-validated)."""
    try:
        raw: Any = json.loads(data)
    except (ValueError, RecursionError):
        return
    for build, kind in ((event_record, RecordKind.EVENT), (usage_record, RecordKind.USAGE)):
        try:
            record = build(raw, NOW)
        except (TypeError, ValueError):
            continue
        assert record.kind is kind
        assert record_from_payload(kind, record.payload, record.stamped_at) == record


def stored_record(data: bytes) -> None:
    """Any bytes as an outbox row's payload or a signed store entry: a record or
    ValueError; verified bytes or TamperedEntryError."""
    text = data.decode("utf-8", errors="replace")
    for kind in RecordKind:
        with contextlib.suppress(ValueError):
            record_from_payload(kind, text, NOW)
    try:
        _VERIFIER.verify("snapshot:k", data)
    except TamperedEntryError:
        return
    raise AssertionError("an entry nobody signed passed verification")


def outbox_row(data: bytes) -> None:
    """Any bytes as the fields of an outbox row (SQLite's columns, Redis's hashes): a record,
    or ValueError (the outbox then dead-letters the row); never anything else."""
    parts = [*data.split(b"\x00", 3), b"", b"", b""][:4]
    kind, key, stamped, payload = (p.decode("utf-8", errors="replace") for p in parts)
    stamp: object = stamped
    with contextlib.suppress(ValueError):
        stamp = float(stamped)  # SQLite hands back a REAL column as a float when it is one
    with contextlib.suppress(ValueError):
        sqlite_record((kind, key, stamp, payload))
    with contextlib.suppress(ValueError):
        redis_record(parts[0] + b"\n" + parts[2], parts[3])
    assert sqlite_shown((kind, key, stamp, payload)).payload == payload  # listed as found
