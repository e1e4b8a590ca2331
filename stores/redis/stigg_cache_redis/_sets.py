"""SET usage sent from a host's local outbox, made known to the fleet once Redis answers.

Redis supersedes an older SET by the newest of its scope it knows (``latest_set``). A SET
sent from the local outbox while Redis did not answer never reached it: an older SET of
another host, moved to Redis later, would then be sent after it and Stigg end at the older
value. Such SETs are remembered here until Redis has their time (``outbox_mark_sets.lua``).
"""

from __future__ import annotations

from collections.abc import Sequence

from stigg_cache.outbox.records import RecordKind, UsageRecord


def set_scope(record: UsageRecord) -> str | None:
    """What a SET replaces, as ``outbox_prelude.lua``'s ``set_scope`` names it; else ``None``."""
    if record.kind is not RecordKind.USAGE or record.update_behavior != "SET":
        return None
    return f"{record.customer_id}\n{record.name}\n{record.resource_id or ''}"


class LocalSets:
    """SETs claimed from the local outbox (by local id) and, once sent, their newest time by
    scope until Redis has it."""

    def __init__(self) -> None:
        self._claimed: dict[int, tuple[str, float]] = {}
        self._sent: dict[str, float] = {}

    def claimed(self, local_id: int, record: UsageRecord) -> None:
        scope = set_scope(record)
        if scope is not None:
            self._claimed[local_id] = (scope, record.stamped_at)

    def settled(self, sent: Sequence[int], others: Sequence[int]) -> None:
        """Local ids settled: those ``sent`` wait to be marked in Redis."""
        for local_id in sent:
            if (claimed := self._claimed.pop(local_id, None)) is not None:
                scope, stamped = claimed
                self._sent[scope] = max(stamped, self._sent.get(scope, stamped))
        for local_id in others:
            self._claimed.pop(local_id, None)

    def unmarked(self) -> list[str]:
        """``outbox_mark_sets.lua``'s arguments: each scope sent and its newest time."""
        return [item for scope, at in self._sent.items() for item in (scope, repr(at))]

    def marked(self, arguments: Sequence[str]) -> None:
        """Redis has these (``unmarked()``'s answer); a newer one sent since still waits."""
        for at in range(0, len(arguments), 2):
            scope, stamped = arguments[at], float(arguments[at + 1])
            if self._sent.get(scope) == stamped:
                del self._sent[scope]
