"""status() reads figures; it never walks the store (#17)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from stigg_cache import ResilientClient
from stigg_cache.chaos.fake import FakeStigg
from stigg_cache.stores.memory import MemoryStore
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
