"""The SQLite outbox passes the shipped outbox conformance suite (on disk and in memory)."""

from __future__ import annotations

from pathlib import Path

from stigg_cache.outbox.base import Outbox
from stigg_cache.outbox.sqlite import SqliteOutbox
from stigg_cache.testing.outbox_conformance import OutboxConformance, SharedOutboxConformance


class TestSqliteOutbox(SharedOutboxConformance):
    def outbox_url(self, base: Path) -> str:
        return f"sqlite:///{base}/outbox.db"

    def make_outbox(self, base: Path) -> Outbox:
        return SqliteOutbox(base / "outbox.db")


class TestMemoryOutbox(OutboxConformance):
    def make_outbox(self, base: Path) -> Outbox:
        del base
        return SqliteOutbox(None)
