"""Environments never share data (DESIGN §11): two API keys on one OS user's default store.

Staging and production run under one OS user, each with its own key and base
URL. A snapshot cached for one must never answer the other's check, usage
queued with one key is never sent with the other, and the files of an earlier
version (one store for everything) are adopted once, by the first environment
to start beside them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import stigg
from click.testing import CliRunner

from stigg_cache import AsyncResilientClient, ResilientClient, Source, environment_token
from stigg_cache.cli import main
from stigg_cache.environment import checked_namespace
from stigg_cache.errors import ConfigurationError
from stigg_cache.testing.fake import FakeMode, FakeStigg, boolean

STAGING_KEY = "sk-staging-0123456789abcdef"
PRODUCTION_KEY = "sk-production-fedcba9876543210"


@pytest.fixture
def user_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """The OS user's cache directory, where the default store and outbox live."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "user-cache"))
    monkeypatch.delenv("STIGG_API_KEY", raising=False)
    monkeypatch.delenv("STIGG_BASE_URL", raising=False)
    return tmp_path / "user-cache" / "stigg-cache"


@pytest.fixture
def staging() -> Iterator[FakeStigg]:
    with FakeStigg(api_key=STAGING_KEY) as server:
        server.set_customer("shared-id", [boolean("sso", granted=True)])
        yield server


@pytest.fixture
def production() -> Iterator[FakeStigg]:
    with FakeStigg(api_key=PRODUCTION_KEY) as server:
        server.set_customer("shared-id", [boolean("sso", granted=False)])
        yield server


def _client(fake: FakeStigg, key: str, **options: Any) -> ResilientClient:
    return ResilientClient(None, api_key=key, base_url=fake.url, check_timeout=2.0, **options)


def _sso(client: ResilientClient) -> tuple[bool, Source]:
    answer = client.get_boolean_entitlement(customer_id="shared-id", feature_id="sso")
    return answer.has_access, answer.decision.source


def test_a_staging_snapshot_never_answers_a_production_check(
    user_cache: Path, staging: FakeStigg, production: FakeStigg
) -> None:
    with _client(staging, STAGING_KEY) as client:
        assert _sso(client) == (True, Source.LIVE)
    with _client(production, PRODUCTION_KEY) as client:
        assert _sso(client) == (False, Source.LIVE)
    assert production.entitlement_requests() == 1
    with _client(staging, STAGING_KEY) as client:  # each keeps its own, across restarts
        assert _sso(client) == (True, Source.CACHE)
    assert staging.entitlement_requests() == 1


def test_usage_queued_with_one_key_is_never_sent_with_another(
    user_cache: Path, staging: FakeStigg, production: FakeStigg
) -> None:
    staging.set_mode(FakeMode.DOWN)
    with _client(staging, STAGING_KEY) as client:
        client.report_usage(customer_id="shared-id", feature_id="seats", value=3)
    with _client(production, PRODUCTION_KEY) as client:
        assert client.flush(timeout=5).drained
    assert production.account.usages == []
    staging.set_mode(FakeMode.UP)
    with _client(staging, STAGING_KEY) as client:
        assert client.flush(timeout=10).drained
    assert [usage["customerId"] for usage in staging.account.usages] == ["shared-id"]


def test_the_async_client_keeps_environments_apart_too(
    user_cache: Path, staging: FakeStigg, production: FakeStigg
) -> None:
    async def sso(fake: FakeStigg, key: str) -> tuple[bool, Source]:
        async with AsyncResilientClient(
            None, api_key=key, base_url=fake.url, check_timeout=2.0
        ) as client:
            answer = await client.get_boolean_entitlement(customer_id="shared-id", feature_id="sso")
            return answer.has_access, answer.decision.source

    assert asyncio.run(sso(staging, STAGING_KEY)) == (True, Source.LIVE)
    assert asyncio.run(sso(production, PRODUCTION_KEY)) == (False, Source.LIVE)
    assert asyncio.run(sso(staging, STAGING_KEY)) == (True, Source.CACHE)
    assert production.entitlement_requests() == 1


def test_an_sdk_client_and_the_built_in_one_of_one_environment_share_its_files(
    user_cache: Path, staging: FakeStigg
) -> None:
    with _client(staging, STAGING_KEY) as client:
        _sso(client)
    sdk = stigg.Stigg(api_key=STAGING_KEY, base_url=staging.url)
    try:
        with ResilientClient(sdk) as client:
            assert _sso(client) == (True, Source.CACHE)
    finally:
        sdk.close()


def test_an_explicit_namespace_names_the_environment(
    user_cache: Path, staging: FakeStigg, production: FakeStigg
) -> None:
    with _client(staging, STAGING_KEY, namespace="eu-staging") as client:
        _sso(client)
        assert client.status().store == f"sqlite:///{user_cache}/eu-staging/stigg-cache.db"
    with _client(production, PRODUCTION_KEY, namespace="eu-prod") as client:
        assert _sso(client) == (False, Source.LIVE)
    with pytest.raises(ConfigurationError, match="namespace"):
        _client(staging, STAGING_KEY, namespace="../elsewhere")


def test_an_earlier_versions_files_are_adopted_by_the_first_environment_only(
    user_cache: Path, staging: FakeStigg, production: FakeStigg
) -> None:
    legacy = f"sqlite:///{user_cache}/stigg-cache.db"  # where every version before wrote
    staging.set_mode(FakeMode.DOWN)
    with _client(staging, STAGING_KEY, store=legacy) as client:
        client.report_usage(customer_id="shared-id", feature_id="seats", value=1)
    staging.set_mode(FakeMode.UP)
    with _client(staging, STAGING_KEY, store=legacy) as client:
        _sso(client)
        staging.set_mode(FakeMode.DOWN)
        client.report_usage(customer_id="shared-id", feature_id="seats", value=2)
    staging.set_mode(FakeMode.UP)
    with _client(staging, STAGING_KEY) as client:  # the default: the old files, adopted
        assert _sso(client) == (True, Source.CACHE)
        assert client.flush(timeout=10).drained
    assert sorted(usage["value"] for usage in staging.account.usages) == [1, 2]
    with _client(production, PRODUCTION_KEY) as client:  # another environment: its own
        assert _sso(client) == (False, Source.LIVE)
        assert client.status().store.startswith(f"sqlite:///{user_cache}/127.0.0.1_")


def test_the_environment_token_is_a_name_never_the_key() -> None:
    token = environment_token("https://api.stigg.io", STAGING_KEY)
    assert token.startswith("api.stigg.io-")
    assert STAGING_KEY not in token
    assert "staging" not in token
    assert token == environment_token("https://api.stigg.io/", STAGING_KEY)
    assert token != environment_token("https://api.stigg.io", PRODUCTION_KEY)
    assert token != environment_token("https://eu.api.stigg.io", STAGING_KEY)
    assert checked_namespace(token) == token


def test_read_only_tools_take_a_namespace(
    user_cache: Path, staging: FakeStigg, production: FakeStigg, tmp_path: Path
) -> None:
    with _client(staging, STAGING_KEY, namespace="staging") as client:
        _sso(client)
    with _client(production, PRODUCTION_KEY, namespace="production") as client:
        production.set_mode(FakeMode.DOWN)
        client.report_usage(customer_id="shared-id", feature_id="seats", value=1)
    runner = CliRunner()
    held = runner.invoke(main, ["inspect", "--namespace", "staging"])
    assert held.exit_code == 0, held.output
    assert "shared-id" in held.stdout
    waiting = runner.invoke(main, ["outbox", "status", "--namespace", "production"])
    assert waiting.stdout.startswith("pending 1 ")
    policy = tmp_path / "fallback.yaml"
    policy.write_text("version: 1\n")
    explained = runner.invoke(
        main,
        ["policy", "explain", str(policy), "--customer", "shared-id", "--feature", "sso",
         "--namespace", "staging"],
    )  # fmt: skip
    assert explained.exit_code == 0, explained.output
    assert "CACHE" in explained.stdout
    missing = runner.invoke(main, ["inspect", "--namespace", "nowhere"])
    assert missing.exit_code == 2
    assert "production, staging" in missing.stderr
    assert not (user_cache / "nowhere").exists()
