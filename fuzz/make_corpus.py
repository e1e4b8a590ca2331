"""Writes the seed corpora (committed; rerun after a format change): python -m fuzz.make_corpus."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from stigg_cache.adapters._stigg_json import snapshot_to_json
from stigg_cache.models import CreditEntitlement, Snapshot
from stigg_cache.outbox.records import event_record, usage_record
from stigg_cache.stores._codec import encode_snapshot
from stigg_cache.stores.memory import MemoryStore
from stigg_cache.stores.signed import SignedStore
from stigg_cache.testing.fake import boolean, enum_feature, metered, numeric
from tests.adapters.test_entitlements_state import STATE_V2

CORPUS = Path(__file__).parent / "corpus"
ROOT = Path(__file__).parent.parent


def _snapshot() -> Snapshot:
    features = [boolean("sso"), numeric("seats", 25), metered("api", limit=100, usage=40)]
    features.append(enum_feature("models", ["gpt-4", "claude"]))
    credit = {"tokens": CreditEntitlement("tokens", is_granted=True, usage_limit=10)}
    entitlements = {f.feature_id: f for f in features}
    return Snapshot("acme", "r1", entitlements, 1.8e9, plan_ids=("pro",), credits=credit)


def seeds() -> dict[str, dict[str, bytes]]:
    """Seed files by target."""
    snapshot = _snapshot()
    event = event_record(
        {"customer_id": "c", "event_name": "e", "idempotency_key": "k1", "dimensions": {"n": 1}},
        1.8e9,
    )
    usage = usage_record(
        {"customer_id": "c", "feature_id": "f", "value": 2.5, "idempotency_key": "k2"}, 1.8e9
    )
    signer = SignedStore(MemoryStore(), [b"seed-key-0123456789abcdef"])
    signer.put("snapshot:k", encode_snapshot(snapshot))
    signed = signer.inner.get("snapshot:k")
    assert isinstance(signed, bytes)
    response = {"data": snapshot_to_json(snapshot, updated_at=datetime(2027, 1, 15, tzinfo=UTC))}
    return {
        "policy": {
            "example.yaml": (ROOT / "examples" / "fallback.yaml").read_bytes(),
            "minimal.yaml": b"version: 1\n",
            "alias.yaml": b"version: 1\na: &x [1]\nb: *x\n",
        },
        "snapshot": {
            "rich": encode_snapshot(snapshot),
            "empty": encode_snapshot(Snapshot("c", None, {}, 1.0)),
        },
        "rest": {
            "entitlements.json": json.dumps(response).encode(),
            "error.json": b'{"message":"x"}',
        },
        "state": {
            "graphql-v2.json": json.dumps({"data": {"entitlementsState": STATE_V2}}).encode(),
            "errors.json": b'{"errors":[{"message":"Unauthorized"}],"data":null}',
            # the older Entitlement type: validUntil in epoch milliseconds
            "graphql-v1-ms.json": b'{"data":{"entitlementsState":{"entitlements":[{"__typename":'
            b'"Entitlement","isGranted":true,"hasUnlimitedUsage":false,"feature":{"refId":"seats",'
            b'"featureType":"NUMBER"},"usageLimit":5,"validUntil":1796083200000.0}]}}}',
        },
        "usage": {
            "event.json": json.dumps(
                {"customer_id": "c", "event_name": "e", "dimensions": {"a": 1}}
            ).encode(),
            "usage.json": json.dumps(
                {"customer_id": "c", "feature_id": "f", "value": 3, "update_behavior": "SET"}
            ).encode(),
        },
        "store_entry": {
            "event": event.payload.encode(),
            "usage": usage.payload.encode(),
            "signed": signed,
        },
        "outbox_row": {  # kind, key, stamped_at, payload: NUL-separated
            "event": b"\x00".join([b"event", b"k1", b"1800000000.0", event.payload.encode()]),
            "usage": b"\x00".join([b"usage", b"k2", b"1800000000.0", usage.payload.encode()]),
            "bad-stamp": b'usage\x00k2\x00yesterday\x00{"idempotencyKey": "k2"}',
            "no-kind": b"weird\x00k3\x001\x00{}",
            "not-utf8": b"event\x00k4\x001\x00\xff\xfe",
        },
    }


def main() -> None:
    for target, files in seeds().items():
        folder = CORPUS / target
        folder.mkdir(parents=True, exist_ok=True)
        for name, content in files.items():
            (folder / name).write_bytes(content)


if __name__ == "__main__":
    main()
