"""How the Redis outbox stores a record: its identity, its parts, and reading them back."""

from __future__ import annotations

from stigg_cache.outbox.base import Held
from stigg_cache.outbox.records import RecordKind, UsageRecord, record_from_payload, scoped_key


def identity(record: UsageRecord) -> str:
    """``kind\ncustomer\nkey``: a key belongs to its customer (``outbox_scope.lua``)."""
    return f"{record.kind.value}\n{scoped_key(record.customer_id, record.idempotency_key)}"


def encode(record: UsageRecord) -> str:
    # The payload (stored beside it) holds every other field of the record.
    return f"{record.kind.value}\n{record.stamped_at!r}"


def decode(raw: bytes | None, payload: bytes | None) -> UsageRecord:
    """Raises ValueError: not a record this library wrote (or a part of it is missing)."""
    if not raw or not payload:
        raise ValueError("a part of the record is missing")
    kind, _, stamped = raw.decode().partition("\n")
    return record_from_payload(RecordKind(kind), payload.decode(), float(stamped))


def readable(raw: bytes | None, payload: bytes | None) -> UsageRecord | None:
    """The record, or ``None`` for one that does not decode (claims dead-letter those)."""
    try:
        return decode(raw, payload)
    except ValueError:
        return None


def as_held(record: UsageRecord, acked: bytes, counted: bytes) -> Held:
    """A held record as the scripts answer it ("": not acknowledged / not counted)."""
    return Held(record, float(acked) if acked else None, float(counted) if counted else None)


def reused_key(record: UsageRecord) -> ValueError:
    return ValueError(
        f"idempotency_key {record.idempotency_key!r} was already used for different usage: "
        "Stigg would silently drop this one; use a new key"
    )
