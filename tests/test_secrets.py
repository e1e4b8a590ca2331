"""Secret hygiene: the API key appears nowhere we write, and what we write is private."""

from __future__ import annotations

import logging
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stigg_cache import FallbackPolicy, ResilientClient, Staleness
from stigg_cache.policy.watcher import PolicyWatcher
from stigg_cache.testing import runtime_of
from stigg_cache.testing.fake import FakeMode, FakeStigg
from tests.conftest import API_KEY

POLICY = FallbackPolicy(staleness=Staleness(fresh_for_s=0.2, max_staleness_s=3600))


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    old = os.umask(0)
    yield
    os.umask(old)


def _outage_story(client: ResilientClient, fake: FakeStigg) -> list[object]:
    """Warm, blackhole, stale, cold, usage offline, restore, drain, reconcile."""
    seen: list[object] = [client.get_boolean_entitlement(customer_id="acme", feature_id="sso")]
    fake.set_mode(FakeMode.BLACKHOLE)
    time.sleep(0.3)
    seen.append(client.get_metered_entitlement(customer_id="acme", feature_id="api_calls"))
    seen.append(client.get_boolean_entitlement(customer_id="cold", feature_id="sso"))
    seen += client.report_event([{"customer_id": "acme", "event_name": "api.request"}])
    seen.append(client.report_usage(customer_id="acme", feature_id="api_calls", value=2))
    fake.set_mode(FakeMode.UP)
    deadline = time.monotonic() + 20
    while client.status().outbox_depth and time.monotonic() < deadline:
        client.get_boolean_entitlement(customer_id="acme", feature_id="sso")
        client.flush(timeout=1)
    seen.append(client.reconcile(timeout=5))
    status = client.status()
    assert (seen[1].decision.source.value, status.outbox_depth) == ("STALE", 0)  # type: ignore[attr-defined]
    return [*seen, status]


@pytest.mark.parametrize("inner", ["sdk", "builtin"])
def test_the_api_key_is_in_no_file_log_status_or_repr(
    fake: FakeStigg,
    sdk: Any,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    inner: str,
    permissive_umask: None,
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, httpx's included
    data = tmp_path / "data"
    with ResilientClient(
        sdk if inner == "sdk" else None,
        api_key=None if inner == "sdk" else API_KEY,
        base_url=None if inner == "sdk" else fake.url,
        store=f"sqlite:///{data}/cache.db",
        policy=POLICY,
        check_timeout=0.2,
    ) as client:
        seen = _outage_story(client, fake)
        texts = [
            repr(client),
            repr(runtime_of(client).parts.adapter),
            repr(client.outbox),
            *map(repr, seen),
        ]
    texts += [record.getMessage() for record in caplog.records]
    texts += [repr(vars(record)) for record in caplog.records]
    assert caplog.records, "the story logged nothing: the scan would prove nothing"
    leaks = [text[:200] for text in texts if API_KEY in text]
    assert not leaks
    written = [path for path in data.rglob("*") if path.is_file()]
    assert {path.name for path in written} >= {"cache.db", "cache-outbox.db"}
    for path in written:
        assert API_KEY.encode() not in path.read_bytes(), path
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    for folder in [data, *(path for path in data.rglob("*") if path.is_dir())]:
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder


def test_a_policy_file_others_can_write_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "fallback.yaml"
    path.write_text("version: 1\n")
    path.chmod(0o666)
    watcher = PolicyWatcher(path, on_reload=lambda policy: None)
    watcher.close()
    assert [r for r in caplog.records if getattr(r, "event", "") == "stigg_cache.policy_writable"]
