"""status() reads figures; it never walks the store (#17)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

from stigg_cache import ResilientClient
from stigg_cache.stores.memory import MemoryStore
from stigg_cache.testing import runtime_of
from stigg_cache.testing.fake import FakeStigg
from tests.conftest import API_KEY
from tests.helpers import eventually


class _CountingKeys(MemoryStore):
    """A store that says how often its keys were walked, and by which thread."""

    walks: list[str]

    def keys(self, prefix: str = "") -> Iterator[str]:
        import threading

        self.walks.append(threading.current_thread().name)
        return super().keys(prefix)


def test_status_has_the_store_counted_in_the_background_at_most_once_a_minute(
    fake: FakeStigg, tmp_path: Path
) -> None:
    store = _CountingKeys()
    store.walks = []
    client = ResilientClient(None, api_key=API_KEY, base_url=fake.url, store=store)
    client.get_boolean_entitlement(customer_id="acme", feature_id="sso")
    for _ in range(100):
        client.status()
    eventually(lambda: client.status().snapshots_held == 1)
    assert store.walks == ["stigg-cache-count"]  # once, and never in the caller's thread
    client.close()


class _ClosedUnderTheCount(MemoryStore):
    """A store whose connection is closed while a count walks it (the client closed)."""

    def __init__(self) -> None:
        super().__init__()
        self.walking = threading.Event()
        self.closed = threading.Event()

    def keys(self, prefix: str = "") -> Iterator[str]:
        self.walking.set()
        self.closed.wait(10)
        raise ValueError("I/O operation on closed file.")  # what redis-py raises then


def test_a_count_the_closing_client_cuts_short_ends_quietly(fake: FakeStigg) -> None:
    store = _ClosedUnderTheCount()
    client = ResilientClient(None, api_key=API_KEY, base_url=fake.url, store=store)
    assert client.status().snapshots_held is None  # not counted yet: a count starts
    assert store.walking.wait(10)
    client.close()
    store.closed.set()  # pytest fails the test on an exception escaping the thread
    eventually(lambda: not runtime_of(client).parts.cache.upkeep.counting.running())
