"""Prometheus metrics on a real /metrics endpoint, scraped over loopback."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.parser import text_string_to_metric_families

from stigg_cache.client import surface
from stigg_cache.metrics import instrument
from stigg_cache.testing.fake import FakeMode, FakeStigg
from tests.conftest import MakeClient


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def metrics_url(registry: CollectorRegistry) -> Iterator[str]:
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    yield f"http://127.0.0.1:{server.server_port}/metrics"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def _scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(url, timeout=5).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_decisions_latency_outbox_breaker_and_policy_are_exposed(
    fake: FakeStigg,
    make_client: MakeClient,
    registry: CollectorRegistry,
    metrics_url: str,
    tmp_path: Path,
) -> None:
    policy = tmp_path / "fallback.yaml"
    policy.write_text("version: 1\n")
    client = make_client(policy=policy, check_timeout=0.2)
    instrument(client, registry)
    client.get_boolean_entitlement(customer_id="acme", feature_id="sso")  # LIVE
    for _ in range(3):
        client.get_boolean_entitlement(customer_id="acme", feature_id="sso")  # CACHE, fast path
    client.get_metered_entitlement(customer_id="acme", feature_id="api_calls")
    fake.set_mode(FakeMode.DOWN)
    for _ in range(4):
        client.get_boolean_entitlement(customer_id=f"cold-{_}", feature_id="sso")  # DEFAULT
    client.report_event([{"customer_id": "acme", "event_name": "e"}])
    policy.write_text("version: 1\ndefault: {has_access: false}\n")
    deadline = time.monotonic() + 5
    while (
        (watcher := surface(client).watcher) is not None
        and watcher.reloads == 0
        and time.monotonic() < deadline
    ):
        time.sleep(0.05)

    metrics = _scrape(metrics_url)
    assert metrics[("stigg_cache_decisions_total", (("kind", "boolean"), ("tier", "LIVE")))] == 1
    assert metrics[("stigg_cache_decisions_total", (("kind", "boolean"), ("tier", "CACHE")))] == 3
    assert metrics[("stigg_cache_decisions_total", (("kind", "metered"), ("tier", "CACHE")))] == 1
    assert metrics[("stigg_cache_decisions_total", (("kind", "boolean"), ("tier", "DEFAULT")))] == 4
    assert metrics[("stigg_cache_check_seconds_count", ())] == 9
    assert metrics[("stigg_cache_check_seconds_bucket", (("le", "+Inf"),))] == 9
    assert metrics[("stigg_cache_outbox_depth", ())] == 1
    assert metrics[("stigg_cache_snapshots_in_memory", ())] == 1
    assert metrics[("stigg_cache_policy_reloads_total", ())] == 1
    assert metrics[("stigg_cache_tamper_detections_total", ())] == 0
    state = {
        labels[0][1]: value
        for (name, labels), value in metrics.items()
        if name == "stigg_cache_connection_state"
    }
    assert sum(state.values()) == 1
    assert state["CONNECTED"] == 0  # Stigg is down
    assert any(name == "stigg_cache_faults_total" for name, _ in metrics)
