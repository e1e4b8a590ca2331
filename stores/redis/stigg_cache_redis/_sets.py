"""What a SET usage record replaces: Redis supersedes an older SET by the newest of its
scope (``latest_set``), so a SET is sent only through Redis, never from a local outbox."""

from __future__ import annotations

from stigg_cache.outbox.records import RecordKind, UsageRecord


def set_scope(record: UsageRecord) -> str | None:
    """What a SET replaces, as ``outbox_prelude.lua``'s ``set_scope`` names it; else ``None``."""
    if record.kind is not RecordKind.USAGE or record.update_behavior != "SET":
        return None
    return f"{record.customer_id}\n{record.name}\n{record.resource_id or ''}"
