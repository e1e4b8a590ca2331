"""A signed snapshot copied into another namespace of one Redis does not verify (#16)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import redis

from stigg_cache import ResilientClient
from stigg_cache.errors import TamperedEntryError
from stigg_cache.stores.signed import SignedStore
from stigg_cache.testing.fake import FakeStigg
from stigg_cache_redis import open_redis_store

from conftest import API_KEY, REDIS_URL, url_for

KEY = b"one-key-shared-by-two-environments"


def test_stagings_signed_entry_copied_into_prods_namespace_is_refused() -> None:
    staging = SignedStore(open_redis_store(f"{REDIS_URL}?namespace=sign-staging"), [KEY])
    prod = SignedStore(open_redis_store(f"{REDIS_URL}?namespace=sign-prod"), [KEY])
    staging.put("snap:acme", b'{"sso": true}')
    raw = redis.Redis.from_url(REDIS_URL)
    copied = raw.get("stigg-cache:sign-staging:snap:snap:acme")
    assert copied is not None
    raw.set("stigg-cache:sign-prod:snap:snap:acme", copied)  # an attacker's copy
    assert staging.get("snap:acme") == b'{"sso": true}'  # where it was signed: fine
    with pytest.raises(TamperedEntryError):
        prod.get("snap:acme")
    raw.close()
    staging.close()
    prod.close()


def test_a_redis_store_without_a_signing_key_is_warned_about_once(
    fake: FakeStigg, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="stigg_cache"):
        ResilientClient(None, api_key=API_KEY, base_url=fake.url, store=url_for(tmp_path)).close()
        signed = ResilientClient(
            None,
            api_key=API_KEY,
            base_url=fake.url,
            store=url_for(tmp_path),
            signing_key=KEY,
        )
        signed.close()
    warned = [r for r in caplog.records if "unsigned_shared_store" in r.getMessage()]
    assert len(warned) == 1
    assert "signing_key" in warned[0].getMessage()
