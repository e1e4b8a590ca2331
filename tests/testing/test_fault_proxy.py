"""The fault proxy, through the pytest plugin's fixtures: each fault as a client sees it."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from stigg_cache import ConfigurationError, FallbackPolicy, ResilientClient, Source
from stigg_cache.testing.fake import FakeStigg, boolean
from stigg_cache.testing.proxy import FaultProxy, Faults
from stigg_cache.testing.pytest_plugin import FAKE_API_KEY

BUDGET_S = 0.3
MARGIN_S = 0.25
POLICY = FallbackPolicy.from_yaml("version: 1\nstaleness: {fresh_for: 0s, max_staleness: 1h}\n")
PATH = "/api/v1/customers/acme/entitlements"


@pytest.fixture
def http(fault_proxy: FaultProxy) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=fault_proxy.url, headers={"X-API-KEY": FAKE_API_KEY}, timeout=2.0
    ) as client:
        yield client


@pytest.fixture(autouse=True)
def _acme(fake_stigg: FakeStigg) -> None:
    fake_stigg.set_customer("acme", [boolean("sso"), boolean(f"f{'x' * 2000}")])


def test_a_clean_proxy_is_transparent(http: httpx.Client) -> None:
    assert http.get(PATH).json()["data"]["entitlements"]


@pytest.mark.parametrize(
    ("faults", "error"),
    [
        (Faults(refuse=True), httpx.ConnectError),
        (Faults(reset_after_bytes=100), httpx.RemoteProtocolError),
        (Faults(truncate_after_bytes=300), httpx.RemoteProtocolError),
        (Faults(blackhole=True), httpx.ReadTimeout),
    ],
)
def test_connection_faults_reach_the_client(
    fault_proxy: FaultProxy, http: httpx.Client, faults: Faults, error: type[Exception]
) -> None:
    fault_proxy.set(faults)
    with pytest.raises((error, httpx.ReadError)):
        http.get(PATH, timeout=0.5)
    fault_proxy.clear()
    assert http.get(PATH).status_code == 200  # back at once


def test_corrupted_bodies_keep_their_headers(fault_proxy: FaultProxy, http: httpx.Client) -> None:
    clean = http.get(PATH).content
    fault_proxy.set(corrupt=True)
    damaged = http.get(PATH)
    assert damaged.status_code == 200
    assert len(damaged.content) == len(clean)
    assert damaged.content != clean


def test_latency_bandwidth_and_trickle_slow_answers_down(
    fault_proxy: FaultProxy, http: httpx.Client
) -> None:
    size = len(http.get(PATH).content)
    for faults, at_least_s in [
        (Faults(latency_s=0.2, jitter_s=0.05), 0.2),
        (Faults(bandwidth_bps=size * 4), 0.25),
        (Faults(trickle_s=0.0005), size * 0.0005 * 0.8),
    ]:
        fault_proxy.set(faults)
        started = time.monotonic()
        assert http.get(PATH).status_code == 200
        assert time.monotonic() - started >= at_least_s, faults


def test_flapping_alternates_and_ends_clean(fault_proxy: FaultProxy, http: httpx.Client) -> None:
    fault_proxy.flap(Faults(refuse=True), period_s=0.2, duration_s=1.0)
    outcomes: set[int | str] = set()
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        try:
            outcomes.add(http.get(PATH, timeout=0.5).status_code)
        except (httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError):
            outcomes.add("refused")
        time.sleep(0.02)
    assert outcomes == {200, "refused"}
    time.sleep(0.3)
    assert fault_proxy.faults == Faults()
    assert http.get(PATH).status_code == 200


@pytest.mark.parametrize(
    "faults",
    [
        Faults(blackhole=True),
        Faults(latency_s=2.0),
        Faults(trickle_s=0.05),
        Faults(reset_after_bytes=50),
        Faults(corrupt=True),
        Faults(refuse=True),
    ],
)
def test_checks_stay_within_budget_under_every_fault(
    fake_stigg: FakeStigg, fault_proxy: FaultProxy, faults: Faults
) -> None:
    fake_stigg.set_customer("cold", [boolean("sso")])
    with ResilientClient(
        None,
        api_key=FAKE_API_KEY,
        base_url=fault_proxy.url,
        store="memory://",
        outbox="memory://",
        policy=POLICY,
        check_timeout=BUDGET_S,
    ) as client:
        assert (
            client.get_boolean_entitlement(customer_id="acme", feature_id="sso").decision.source
            is Source.LIVE
        )
        fault_proxy.set(faults)
        for customer, tiers in (("acme", {Source.STALE}), ("cold", {Source.DEFAULT})):
            started = time.monotonic()
            result = client.get_boolean_entitlement(customer_id=customer, feature_id="sso")
            assert time.monotonic() - started < BUDGET_S + MARGIN_S
            assert result.decision.source in tiers, (customer, result.decision)


def test_only_loopback_is_ever_proxied() -> None:
    with pytest.raises(ConfigurationError, match="only targets loopback"):
        FaultProxy(443, upstream_host="10.0.0.1")
    with pytest.raises(ConfigurationError, match="only targets loopback"):
        FaultProxy.to("http://example.com:80")
