"""Tamper-evident snapshots: what a local user could do to the cache, and key rotation."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from stigg_cache import ConfigurationError, FallbackPolicy, ResilientClient, Source
from stigg_cache.models import Snapshot
from stigg_cache.stores import open_store, signed
from stigg_cache.stores._codec import encode_snapshot, snapshot_key
from stigg_cache.stores.memory import MemoryStore
from stigg_cache.stores.signed import SignedStore
from stigg_cache.testing import runtime_of
from stigg_cache.testing.conformance import StoreConformance
from stigg_cache.testing.fake import FakeMode, FakeStigg, boolean
from tests.conftest import API_KEY

KEY_A = "a" * 32
KEY_B = "b" * 32
# sso is a paid feature: denied when no trustworthy snapshot says otherwise.
POLICY = FallbackPolicy.from_yaml(
    "version: 1\nstaleness:\n  fresh_for: 60s\n  max_staleness: 1h\n"
    "features:\n  sso:\n    fallback: {has_access: false}\n"
)


class TestSignedStore(StoreConformance):
    def make_store(self, base: Path) -> SignedStore:
        del base
        return SignedStore(MemoryStore(), [KEY_A.encode()])


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/cache.db"


def _client(
    fake: FakeStigg, store_url: str, key: object = KEY_A, policy: FallbackPolicy = POLICY
) -> ResilientClient:
    return ResilientClient(
        None,
        api_key=API_KEY,
        base_url=fake.url,
        store=store_url,
        outbox="memory://",
        policy=policy,
        signing_key=key,  # type: ignore[arg-type]
    )


def _sso(
    fake: FakeStigg, store_url: str, customer: str, key: object = KEY_A
) -> tuple[bool, Source, int]:
    """Check sso from the store alone (a new client, Stigg down)."""
    with _client(fake, store_url, key) as client:
        result = client.get_boolean_entitlement(customer_id=customer, feature_id="sso")
        return result.has_access, result.decision.source, client.status().tamper_detections


def _warm(fake: FakeStigg, store_url: str, *customers: str, key: object = KEY_A) -> None:
    with _client(fake, store_url, key) as client:
        for customer in customers:
            assert (
                client.get_boolean_entitlement(
                    customer_id=customer, feature_id="sso"
                ).decision.source
                is Source.LIVE
            )


def _forged(customer: str) -> bytes:
    """A well-formed, unsigned snapshot granting sso: what an attacker can write."""
    return encode_snapshot(Snapshot(customer, None, {"sso": boolean("sso")}, time.time()))


def _edit(store_url: str, customer: str, change: Callable[[bytes], bytes]) -> None:
    store = open_store(store_url)
    key = snapshot_key(customer, None)
    value = store.get(key)
    assert isinstance(value, bytes)
    store.put(key, change(value))
    store.close()


@pytest.fixture
def fake_with_denied_sso(fake: FakeStigg) -> FakeStigg:
    fake.set_customer("acme", [boolean("sso", granted=False)])
    fake.set_customer("globex", [boolean("sso")])
    return fake


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda value: _forged("acme"), id="replaced-by-an-unsigned-grant"),
        pytest.param(
            lambda value: value[:60] + _forged("acme"), id="signed-header-over-a-forged-body"
        ),
        pytest.param(lambda value: value[:-5], id="truncated"),
        pytest.param(lambda value: value[:-1] + bytes([value[-1] ^ 1]), id="one-bit-flipped"),
    ],
)
def test_an_edited_snapshot_is_a_reported_miss_and_grants_nothing(
    fake_with_denied_sso: FakeStigg, store_url: str, tamper: Callable[[bytes], bytes]
) -> None:
    fake = fake_with_denied_sso
    _warm(fake, store_url, "acme")
    fake.set_mode(FakeMode.DOWN)
    _edit(store_url, "acme", tamper)
    has_access, source, tampered = _sso(fake, store_url, "acme")
    assert (has_access, source, tampered) == (False, Source.DEFAULT, 1)


def test_a_snapshot_moved_from_another_customers_key_is_refused(
    fake_with_denied_sso: FakeStigg, store_url: str
) -> None:
    fake = fake_with_denied_sso
    _warm(fake, store_url, "acme", "globex")  # globex has sso, acme does not
    fake.set_mode(FakeMode.DOWN)
    store = open_store(store_url)
    stolen = store.get(snapshot_key("globex", None))
    assert isinstance(stolen, bytes)
    store.put(snapshot_key("acme", None), stolen)
    store.close()
    assert _sso(fake, store_url, "acme") == (False, Source.DEFAULT, 1)


def test_a_replayed_older_snapshot_is_refused_by_the_process_that_saw_a_newer_one(
    fake_with_denied_sso: FakeStigg, store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One host here: no clock skew to allow for, so any older generation is a rollback.
    monkeypatch.setattr(signed, "CLOCK_SKEW_NS", 0)
    fake = fake_with_denied_sso
    fake.set_customer("acme", [boolean("sso")])  # granted once...
    _warm(fake, store_url, "acme")
    store = open_store(store_url)
    old = store.get(snapshot_key("acme", None))
    assert isinstance(old, bytes)
    fake.set_customer("acme", [boolean("sso", granted=False)])  # ...then revoked
    with _client(fake, store_url) as client:
        time.sleep(0.01)
        runtime_of(client).parts.cache.invalidate(
            "acme", None
        )  # refetched at once, not taken from the store
        runtime_of(client).parts.fetcher.fetch(
            ("acme", None), 2.0
        )  # the newer snapshot: sso denied
        fake.set_mode(FakeMode.DOWN)
        store.put(snapshot_key("acme", None), old)  # the user puts the old grant back
        runtime_of(client).parts.cache.clear_l1()
        result = client.get_boolean_entitlement(customer_id="acme", feature_id="sso")
        assert (result.has_access, result.decision.source) == (False, Source.DEFAULT)
        assert client.status().tamper_detections == 1
    store.close()


def test_a_replayed_snapshot_older_than_max_staleness_is_not_trusted_by_a_new_process(
    fake_with_denied_sso: FakeStigg, tmp_path: Path
) -> None:
    fake = fake_with_denied_sso
    fake.set_customer("acme", [boolean("sso")])
    store_url = f"sqlite:///{tmp_path}/cache.db"
    short = FallbackPolicy.from_yaml(
        "version: 1\nstaleness:\n  fresh_for: 0.1s\n  max_staleness: 0.3s\n"
        "features:\n  sso:\n    fallback: {has_access: false}\n"
    )
    with _client(fake, store_url, policy=short) as client:
        assert client.get_boolean_entitlement(customer_id="acme", feature_id="sso").has_access
    fake.set_mode(FakeMode.DOWN)
    time.sleep(0.4)  # the validly signed grant is now older than max_staleness
    with _client(fake, store_url, policy=short) as client:
        result = client.get_boolean_entitlement(customer_id="acme", feature_id="sso")
        assert (result.has_access, result.decision.source) == (False, Source.DEFAULT)


def test_keys_rotate_the_first_signs_and_all_verify(
    fake_with_denied_sso: FakeStigg, store_url: str
) -> None:
    fake = fake_with_denied_sso
    _warm(fake, store_url, "globex", key=KEY_A)
    fake.set_mode(FakeMode.DOWN)
    assert _sso(fake, store_url, "globex", key=[KEY_B, KEY_A]) == (True, Source.CACHE, 0)
    fake.set_mode(FakeMode.UP)
    with _client(fake, store_url, [KEY_B, KEY_A]) as client:
        runtime_of(client).parts.cache.invalidate(
            "globex", None
        )  # refetched at once, not taken from the store
        runtime_of(client).parts.fetcher.fetch(("globex", None), 2.0)  # rewritten, signed by B
    fake.set_mode(FakeMode.DOWN)
    assert _sso(fake, store_url, "globex", key=KEY_B) == (True, Source.CACHE, 0)
    assert _sso(fake, store_url, "globex", key=KEY_A) == (False, Source.DEFAULT, 1)  # A retired


def test_the_key_is_never_written_and_status_says_only_that_signing_is_on(
    fake_with_denied_sso: FakeStigg, tmp_path: Path, store_url: str
) -> None:
    _warm(fake_with_denied_sso, store_url, "acme", "globex")
    with _client(fake_with_denied_sso, store_url) as client:
        status = client.status()
        assert status.signing == "hmac-sha256, 1 key(s)"
        assert KEY_A not in repr(status) + repr(client) + repr(runtime_of(client).parts.cache.store)
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert KEY_A.encode() not in path.read_bytes(), path


def test_signing_keys_come_from_the_environment_and_short_ones_are_refused(
    monkeypatch: pytest.MonkeyPatch, fake: FakeStigg, store_url: str
) -> None:
    monkeypatch.setenv("STIGG_CACHE_SIGNING_KEY", f"{KEY_B},{KEY_A}")
    with _client(fake, store_url, key=None) as client:
        assert client.status().signing == "hmac-sha256, 2 key(s)"
    with pytest.raises(ConfigurationError, match="at least 16 bytes"):
        _client(fake, store_url, key="short")
