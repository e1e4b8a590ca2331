"""Every built-in store passes the shipped conformance suite."""

from __future__ import annotations

from pathlib import Path

from stigg_cache.stores.base import Store
from stigg_cache.stores.memory import MemoryStore
from stigg_cache.testing.conformance import DurableStoreConformance, StoreConformance


class TestMemoryStore(StoreConformance):
    def make_store(self, base: Path) -> Store:
        del base
        return MemoryStore()


class TestSqliteStore(DurableStoreConformance):
    def store_url(self, base: Path) -> str:
        return f"sqlite:///{base}/nested/cache.db"


class TestDiskStore(DurableStoreConformance):
    def store_url(self, base: Path) -> str:
        return f"disk:///{base}/disk-cache"
