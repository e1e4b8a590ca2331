"""Stigg refusing us: a refused probe, a refused key, and how long Stigg says to wait (#15)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from stigg_cache import ResilientClient, Source
from stigg_cache.core.breaker import CircuitBreaker
from stigg_cache.core.pacing import retry_delay
from stigg_cache.metrics import ClientCollector
from stigg_cache.outbox.flusher import MAX_REQUEST_BYTES, SEND_PHASES
from stigg_cache.testing import runtime_of
from stigg_cache.testing.fake import FakeMode, FakeStigg
from tests.helpers import client_on, eventually, metered_fallback

POLICY = metered_fallback(100.0, fresh_for_s=0.2)


def _client(fake: FakeStigg, tmp_path: Path, **options: Any) -> ResilientClient:
    breaker = CircuitBreaker(failure_threshold=1, base_backoff_s=0.2, max_backoff_s=0.4)
    return client_on(fake, tmp_path, policy=POLICY, breaker=breaker, **options)


def _live(client: ResilientClient, customer: str) -> bool:
    answer = client.get_boolean_entitlement(customer_id=customer, feature_id="sso")
    return answer.decision.source is Source.LIVE


def _answered_by_stigg(client: ResilientClient, customer: str) -> bool:
    """A check answers from what Stigg just said: LIVE, or a fresh snapshot that the
    flusher's idle probe (or a refresh) fetched a moment before."""
    answer = client.get_boolean_entitlement(customer_id=customer, feature_id="sso")
    decision = answer.decision
    return decision.source is Source.LIVE or (
        decision.source is Source.CACHE
        and not decision.stale
        and decision.age_s is not None
        and decision.age_s < 5.0
    )


def test_a_half_open_probe_refused_with_403_is_resolved_and_stigg_is_probed_again(
    fake: FakeStigg, tmp_path: Path
) -> None:
    client = _client(fake, tmp_path)
    fake.set_mode(FakeMode.DOWN)
    client.get_boolean_entitlement(customer_id="acme", feature_id="sso")
    assert client.status().breaker == "open"
    fake.set_mode(FakeMode.FORBIDDEN)  # Stigg's gateway refuses while it comes back

    def probed() -> bool:  # a check, once the backoff has passed, is the probe
        _live(client, "acme")
        return fake.counts["GET 403"] > 0 and client.status().breaker == "open"

    eventually(probed)  # refused, it re-opens the breaker: not half-open forever
    assert client.status().auth_error is not None
    fake.set_mode(FakeMode.UP)
    eventually(lambda: _answered_by_stigg(client, "acme"))  # probed again, within the backoff
    client.report_usage(customer_id="acme", feature_id="api_calls", value=1)
    assert client.flush(timeout=5).drained  # and sending resumed
    status = client.status()
    assert (status.breaker, status.auth_error) == ("closed", None)
    client.close()


def test_a_refused_key_pauses_sending_and_keeps_every_record(
    fake: FakeStigg, tmp_path: Path
) -> None:
    client = _client(fake, tmp_path)
    client.report_event(
        [
            {"customer_id": "acme", "event_name": "login", "idempotency_key": f"e{n}"}
            for n in range(500)
        ]
    )
    fake.set_mode(FakeMode.UNAUTHORIZED)  # the key was revoked (or rotated) meanwhile
    eventually(lambda: client.status().auth_error is not None)
    refused_posts = fake.counts["POST 401"]
    status = client.status()
    assert (status.dead_letters, status.outbox_depth) == (0, 500)
    assert status.sending_resumes_at is not None  # paused, with backoff: not hammering
    assert refused_posts <= 3
    metrics = {m.name: m for m in ClientCollector(client).collect()}
    assert metrics["stigg_cache_auth_refused"].samples[0].value == 1.0
    fake.set_mode(FakeMode.UP)  # the key is accepted again
    assert client.flush(timeout=10).drained
    assert sorted(e["idempotencyKey"] for e in fake.account.events) == sorted(
        f"e{n}" for n in range(500)
    )
    assert max(fake.account.receipts.values()) == 1
    assert client.status().auth_error is None
    client.close()


def test_a_record_stigg_refuses_is_isolated_by_halves_paced_by_the_bucket(
    fake: FakeStigg, tmp_path: Path
) -> None:
    fake.account.rejected_customers.add("banned")
    client = _client(fake, tmp_path, events_per_second=400)
    events = [
        {
            "customer_id": "banned" if n == 300 else "acme",
            "event_name": "x",
            "idempotency_key": f"e{n}",
        }
        for n in range(400)
    ]
    client.report_event(events)
    eventually(lambda: client.status().dead_letters == 1 and client.status().outbox_depth == 0)
    (dead,) = client.outbox.dead_letters()
    assert dead.record.idempotency_key == "e300"
    assert len(fake.account.events) == 399
    client.close()


def test_stiggs_retry_after_is_honoured_up_to_an_hour() -> None:
    assert retry_delay(1, 0.0, 300.0) == 300.0  # was cut to 60 s
    assert retry_delay(1, 0.0, 7200.0) == 3600.0
    assert retry_delay(30, 0.999) < 60.0  # our own backoff keeps its ceiling


def test_an_event_under_a_megabyte_of_utf8_reaches_the_fake_as_it_would_stigg(
    fake: FakeStigg, tmp_path: Path
) -> None:
    client = _client(fake, tmp_path)
    text = "€" * 10_000  # 20 dimensions of 30 KB: 600 KB of UTF-8, 1.2 MB ASCII-escaped
    dimensions = {f"part{n}": text for n in range(20)}
    client.report_event([{"customer_id": "acme", "event_name": "doc", "dimensions": dimensions}])
    assert client.flush(timeout=10).drained
    assert client.status().dead_letters == 0
    assert fake.account.events[0]["dimensions"] == dimensions
    client.close()


def test_a_request_carries_a_few_megabytes_at_most_and_the_rest_follows(
    fake: FakeStigg, tmp_path: Path
) -> None:
    client = _client(fake, tmp_path)
    text = "x" * 9_000
    fake.set_mode(FakeMode.DOWN)  # 40 events of ~900 KB wait, then go out in one drain
    for start in range(0, 40, 10):
        client.report_event(
            [
                {
                    "customer_id": "acme",
                    "event_name": "doc",
                    "idempotency_key": f"e{n}",
                    "dimensions": {f"d{k}": text for k in range(100)},
                }
                for n in range(start, start + 10)
            ]
        )
    fake.set_mode(FakeMode.UP)
    # The sends that failed meanwhile may have opened the breaker: flush() returns at once
    # until its backoff has passed (nothing is sent while Stigg counts as offline).
    eventually(lambda: client.flush(timeout=5).drained, within_s=60)
    sizes = [len(json.dumps({"events": batch})) for batch in fake.batches]
    assert max(sizes) <= MAX_REQUEST_BYTES + 1_000_000  # the cap, give or take an event
    assert len(fake.batches) >= 9  # 36 MB in requests of ~4 MB
    assert len(fake.account.events) == 40
    assert max(fake.account.receipts.values()) == 1
    client.close()


@pytest.mark.parametrize("lease_s", [1.0, 30.0, 300.0])
def test_a_send_is_bounded_well_inside_its_lease(
    fake: FakeStigg, tmp_path: Path, lease_s: float
) -> None:
    client = _client(fake, tmp_path, outbox_lease_s=lease_s)
    send_timeout_s = runtime_of(client).parts.usage.flusher._send_timeout_s
    assert send_timeout_s * SEND_PHASES < lease_s  # connect + write + read, each bounded
    client.close()
