"""The circuit breaker: pure transitions, and the client's behaviour around it."""

from __future__ import annotations

import pytest
import stigg

from stigg_cache import (
    BreakerState,
    CircuitBreaker,
    ConnectionState,
    FailureKind,
    Source,
    StiggUnavailableError,
)
from stigg_cache._engine.breaker import Health
from stigg_cache.testing import ManualClock
from stigg_cache.testing.fake import FakeMode, FakeStigg
from tests.conftest import MakeClient


def _breaker() -> CircuitBreaker:
    return CircuitBreaker(
        failure_threshold=3, base_backoff_s=1.0, max_backoff_s=8.0, jitter=lambda: 1.0
    )


def test_breaker_opens_after_consecutive_failures_only() -> None:
    breaker = _breaker()
    breaker.record_failure(0)
    breaker.record_failure(0)
    breaker.record_success()
    breaker.record_failure(0)
    breaker.record_failure(0)
    assert breaker.state.value == "closed"
    breaker.record_failure(0)
    assert breaker.state.value == "open"
    assert not breaker.allow(0.5)


def test_half_open_admits_exactly_one_probe() -> None:
    breaker = _breaker()
    for _ in range(3):
        breaker.record_failure(0)
    assert breaker.allow(1.0)
    assert breaker.state is BreakerState.HALF_OPEN
    assert not breaker.allow(1.0)


def test_a_probe_nobody_resolves_expires_and_the_next_request_probes() -> None:
    breaker = _breaker()
    for _ in range(3):
        breaker.record_failure(0)
    assert breaker.allow(1.0)  # the probe, whose verdict never comes
    assert not breaker.allow(1.0 + breaker.probe_timeout_s - 0.001)
    assert breaker.allow(1.0 + breaker.probe_timeout_s)  # expired: a probe in its place
    assert not breaker.allow(1.0 + breaker.probe_timeout_s)  # exactly one probe again
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED


@pytest.mark.parametrize(
    ("failed_probes", "expected_backoff_s"),
    [(0, 1.0), (1, 2.0), (2, 4.0), (3, 8.0), (6, 8.0)],
)
def test_failed_probes_double_the_backoff_up_to_the_cap(
    failed_probes: int, expected_backoff_s: float
) -> None:
    breaker = _breaker()
    for _ in range(3):
        breaker.record_failure(0)
    now = 0.0
    for _ in range(failed_probes):
        now = breaker.retry_at
        assert breaker.allow(now)
        breaker.record_failure(now)
    assert breaker.retry_at - now == expected_backoff_s


def test_jitter_keeps_backoff_between_half_and_all_of_it() -> None:
    low = CircuitBreaker(failure_threshold=1, base_backoff_s=4.0, jitter=lambda: 0.0)
    low.record_failure(10)
    assert low.retry_at == 12.0


def test_successful_probe_closes() -> None:
    breaker = _breaker()
    for _ in range(3):
        breaker.record_failure(0)
    assert breaker.allow(5)
    breaker.record_success()
    assert (breaker.state, breaker.consecutive_failures) == (BreakerState.CLOSED, 0)


def test_client_stops_calling_stigg_while_open_and_recovers_through_a_probe(
    fake: FakeStigg, make_client: MakeClient, clock: ManualClock
) -> None:
    client = make_client(clock=clock, check_timeout=0.5, breaker=_breaker())
    changes: list[tuple[ConnectionState, ConnectionState]] = []
    client.on_status_change(lambda old, new: changes.append((old, new)))
    fake.set_mode(FakeMode.ERROR_5XX)
    for n in range(3):
        result = client.get_boolean_entitlement(customer_id=f"c{n}", feature_id="sso")
        assert result.decision.source is Source.DEFAULT
    assert fake.counts["GET 5xx"] == 3
    assert client.status().state is ConnectionState.OFFLINE

    for n in range(10):  # open: answered without touching the network
        result = client.get_boolean_entitlement(customer_id=f"d{n}", feature_id="sso")
        assert "circuit open" in (result.decision.reason or "")
    assert fake.counts["GET 5xx"] == 3

    clock.advance(1.0)  # backoff over: one probe, which fails, re-opens for twice as long
    client.get_boolean_entitlement(customer_id="e", feature_id="sso")
    client.get_boolean_entitlement(customer_id="f", feature_id="sso")
    assert fake.counts["GET 5xx"] == 4
    assert client.status().breaker == "open"

    fake.set_mode(FakeMode.UP)
    clock.advance(1.0)  # half of the doubled backoff: still open, still no request
    still_open = client.get_boolean_entitlement(customer_id="acme", feature_id="sso")
    assert still_open.decision.source is Source.DEFAULT
    assert fake.entitlement_requests() == 0
    clock.advance(1.0)
    probe = client.get_boolean_entitlement(customer_id="acme", feature_id="sso")
    assert probe.decision.source is Source.LIVE
    status = client.status()
    assert (status.state, status.breaker) == (ConnectionState.CONNECTED, "closed")
    assert changes == [
        (ConnectionState.CONNECTED, ConnectionState.DEGRADED),
        (ConnectionState.DEGRADED, ConnectionState.OFFLINE),
        (ConnectionState.OFFLINE, ConnectionState.DEGRADED),
        (ConnectionState.DEGRADED, ConnectionState.OFFLINE),
        (ConnectionState.OFFLINE, ConnectionState.DEGRADED),
        (ConnectionState.DEGRADED, ConnectionState.CONNECTED),
    ]


def test_a_rejected_request_does_not_trip_the_breaker(
    fake: FakeStigg, make_client: MakeClient
) -> None:
    del fake
    with FakeStigg(api_key="the-right-key") as strict:
        wrong = stigg.Stigg(api_key="a-wrong-key", base_url=strict.url)
        client = make_client(inner=wrong, breaker=_breaker())
        for n in range(5):
            client.get_boolean_entitlement(customer_id=f"c{n}", feature_id="sso")
        assert strict.entitlement_requests() == 5
        assert client.status().breaker == "closed"
        assert "401" in (client.status().last_error or "")
        wrong.close()


def test_a_failure_of_a_call_begun_before_stigg_last_answered_is_old_news() -> None:
    health = Health(CircuitBreaker(failure_threshold=1), ManualClock())
    begun = health.answers
    health.succeeded()  # Stigg answered while the call was under way
    late = StiggUnavailableError(FailureKind.CONNECTION, "released from a blackhole")
    health.failed(late, begun=begun)
    assert (health.state, health.last_error) == (ConnectionState.CONNECTED, None)
    health.failed(late, begun=health.answers)
    assert (health.state, health.last_error) == (
        ConnectionState.OFFLINE,
        "released from a blackhole",
    )


def test_probe_in_says_when_a_process_asking_nothing_should_ask_stigg_once() -> None:
    breaker = _breaker()  # backoff 1 s doubling to 8 s, the whole of it (jitter 1.0)
    assert breaker.probe_in(0) is None  # nothing failed: nothing to learn
    breaker.record_failure(10)  # degraded, still closed: a backoff from the failure
    assert breaker.allow(10)
    assert breaker.probe_in(10.5) == pytest.approx(0.5)
    breaker.record_failure(11)  # the second: doubled
    assert breaker.probe_in(11) == pytest.approx(2.0)
    assert breaker.probe_in(13) == 0
    breaker.record_failure(13)  # the third: open, the backoff of its first trip
    assert breaker.probe_in(13) == pytest.approx(1.0)
    assert breaker.probe_in(14) == 0
    assert breaker.allow(14)  # the probe: its expiry, then
    assert breaker.probe_in(14) == pytest.approx(breaker.probe_timeout_s)
    breaker.record_success()
    assert breaker.probe_in(14) is None
