"""The flusher against the fake Stigg: batches, rate limits, Retry-After, dead letters."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from stigg_cache.adapters.httpx_rest import HttpxRestAdapter
from stigg_cache.core.pacing import TokenBucket
from stigg_cache.outbox.records import RecordKind
from stigg_cache.testing.account import FakeAccount
from stigg_cache.testing.fake import FakeMode, FakeStigg
from tests.conftest import API_KEY, MakeClient


def _events(count: int, customer: str = "acme", prefix: str = "e") -> list[dict[str, object]]:
    return [
        {"customer_id": customer, "event_name": "api.request", "idempotency_key": f"{prefix}-{n}"}
        for n in range(count)
    ]


def _batch_sizes(fake: FakeStigg) -> list[int]:
    return [len(batch) for batch in fake.batches]


@pytest.mark.parametrize("inner", ["sdk", "builtin"])
def test_events_and_usage_go_out_in_stiggs_batch_sizes_exactly_once(
    fake: FakeStigg, make_client: MakeClient, inner: str
) -> None:
    options = {} if inner == "sdk" else {"inner": None, "api_key": API_KEY, "base_url": fake.url}
    fake.set_mode(FakeMode.DOWN)
    client = make_client(**options)
    client.report_event(_events(2_500))
    client.report_usage_bulk(
        [
            {
                "customer_id": "acme",
                "feature_id": "api_calls",
                "value": 1,
                "idempotency_key": f"u-{n}",
            }
            for n in range(250)
        ]
    )
    fake.set_mode(FakeMode.UP)
    result = client.flush(timeout=30)
    assert result.drained, result
    account = fake.account
    assert len(account.events) == 2_500
    assert len(account.usages) == 250
    assert max(account.receipts.values()) == 1
    # Pacing after the outage may split a batch, but never past Stigg's limits, and
    # never into crumbs: at most twice the minimum number of requests.
    assert max(_batch_sizes(fake)) <= 1_000
    assert 3 <= fake.counts["POST events"] <= 8, _batch_sizes(fake)  # half-second batches
    assert 3 <= fake.counts["POST usage"] <= 6  # 100 + 100 + 50 at best
    assert fake.counts["POST usage-v1"] == 0  # the deprecated route is never used


def test_a_throttling_stigg_gets_retry_after_honoured_and_loses_nothing(
    make_client: MakeClient,
) -> None:
    with FakeStigg(api_key=API_KEY, account=FakeAccount(events_per_second=300)) as slow:
        client = make_client(
            inner=None, api_key=API_KEY, base_url=slow.url, events_per_second=1_000
        )
        client.report_event(_events(1_500))
        started = time.monotonic()
        result = client.flush(timeout=60)
        elapsed = time.monotonic() - started
        assert result.drained
        assert len(slow.account.events) == 1_500
        assert slow.account.rate_limited >= 1  # we were told to slow down...
        assert elapsed >= 2.0  # ...and waited as told (1,500 events at 300/s)
        assert max(slow.account.receipts.values()) == 1


def test_retry_after_is_waited_out_before_the_next_send(
    fake: FakeStigg, make_client: MakeClient
) -> None:
    client = make_client()
    fake.set_mode(FakeMode.RATE_LIMITED, retry_after_s=2)
    client.report_event(_events(1))
    deadline = time.monotonic() + 5
    while fake.counts["POST 429"] < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    throttled_at = time.monotonic()
    fake.set_mode(FakeMode.UP)
    assert client.flush(timeout=10).drained
    assert time.monotonic() - throttled_at >= 1.9
    assert fake.counts["POST 429"] == 1


def test_a_rejected_record_is_isolated_dead_lettered_and_requeued(
    fake: FakeStigg, make_client: MakeClient
) -> None:
    fake.account.rejected_customers.add("mallory")
    fake.set_mode(FakeMode.DOWN)
    client = make_client()
    client.report_event(
        _events(20) + _events(1, customer="mallory", prefix="bad") + _events(5, prefix="f")
    )
    fake.set_mode(FakeMode.UP)
    client.flush(timeout=10)
    assert len(fake.account.events) == 25
    letters = client.outbox.dead_letters()
    assert [letter.record.idempotency_key for letter in letters] == ["bad-0"]
    assert "400" in letters[0].reason
    assert client.status().dead_letters == 1
    fake.account.rejected_customers.clear()
    assert client.outbox.requeue() == 1
    assert client.flush(timeout=10).drained
    assert len(fake.account.events) == 26
    assert client.outbox.dead_letters() == []


def test_records_past_the_dedup_window_are_dead_lettered_not_replayed(
    fake: FakeStigg, make_client: MakeClient
) -> None:
    client = make_client()
    old = datetime.now(UTC) - timedelta(days=8)
    client.report_event(
        [
            {
                "customer_id": "acme",
                "event_name": "api.request",
                "idempotency_key": "old",
                "timestamp": old,
            }
        ]
    )
    client.report_event(_events(1))
    client.flush(timeout=10)
    assert [e["idempotencyKey"] for e in fake.account.events] == ["e-0"]
    (letter,) = client.outbox.dead_letters()
    assert letter.record.kind is RecordKind.EVENT
    assert "7-day dedup window" in letter.reason
    assert client.outbox.purge() == 1


def test_nothing_is_sent_against_an_open_circuit(fake: FakeStigg, make_client: MakeClient) -> None:
    client = make_client(check_timeout=0.2)
    fake.set_mode(FakeMode.ERROR_5XX)
    client.report_event(_events(1))
    for n in range(3):
        client.get_boolean_entitlement(customer_id=f"c{n}", feature_id="sso")
    attempts = fake.counts["POST 5xx"]
    time.sleep(0.5)  # the breaker's first backoff is at least 0.5 s
    assert client.status().breaker in ("open", "half_open")
    assert fake.counts["POST 5xx"] <= attempts + 1  # at most one probe
    flushed = client.flush(timeout=0.5)
    assert not flushed.drained
    assert flushed.pending == 1


def test_the_fake_serves_the_deprecated_usage_route_in_its_own_shape(fake: FakeStigg) -> None:
    import httpx

    body = {
        "usages": [
            {"customerId": "acme", "featureId": "api_calls", "value": 2, "idempotencyKey": "v1-a"}
        ]
    }
    answer = httpx.post(f"{fake.url}/api/v1/usage", json=body, headers={"X-API-KEY": API_KEY})
    assert answer.status_code == 200
    assert isinstance(answer.json()["data"], list)
    assert fake.account.usages[0]["idempotencyKey"] == "v1-a"


def test_a_bucket_grants_whole_tokens_up_to_a_limit_or_none_below_the_least() -> None:
    bucket = TokenBucket(rate=10.0, capacity=10.0)
    assert bucket.acquire(4, 1, now=0.0) == 4
    assert bucket.acquire(100, 1, now=0.0) == 6  # what is there, never more
    assert bucket.acquire(5, 5, now=0.25) == 0  # 2.5 tokens: fewer than the least asked for
    bucket.refund(3, now=0.25)  # acquired, not spent
    assert bucket.acquire(10, 5, now=0.25) == 5
    bucket.refund(100, now=0.25)
    assert bucket.available(now=0.25) == 10.0  # never above capacity


def test_a_429_answering_the_breakers_probe_does_not_leave_it_half_open(
    fake: FakeStigg, make_client: MakeClient
) -> None:
    # Found by the chaos run (429-storm-during-replay): the flusher's probe got a 429,
    # nobody told the breaker, and the client stayed DEGRADED, sending nothing, for good.
    client = make_client(check_timeout=0.2)
    client.get_boolean_entitlement(customer_id="acme", feature_id="sso")
    for mode in (FakeMode.DOWN, FakeMode.RATE_LIMITED):  # 3 s of each, usage and checks going on
        fake.set_mode(mode, retry_after_s=2)
        for n in range(30):
            client.report_event(_events(5, prefix=f"{mode.value}-{n}-"))
            client.get_boolean_entitlement(customer_id="acme", feature_id="sso")
            time.sleep(0.1)
    fake.set_mode(FakeMode.UP)
    deadline = time.monotonic() + 15
    while client.status().outbox_depth and time.monotonic() < deadline:
        client.get_boolean_entitlement(customer_id="acme", feature_id="sso")
        time.sleep(0.1)
    assert client.status().outbox_depth == 0
    assert client.status().breaker == "closed"


class _FailsOddly(HttpxRestAdapter):
    """A user's adapter with a bug: its first send raises something that is not ours."""

    sends = 0

    def report_events(self, events: Sequence[Mapping[str, Any]], *, timeout_s: float) -> None:
        self.sends += 1
        if self.sends == 1:
            raise RuntimeError("bug in a user's adapter")
        super().report_events(events, timeout_s=timeout_s)


def test_an_adapter_raising_a_foreign_error_does_not_end_the_flusher(
    fake: FakeStigg, make_client: MakeClient
) -> None:
    adapter = _FailsOddly(api_key=API_KEY, base_url=fake.url)
    client = make_client(inner=adapter)
    (receipt,) = client.report_event([{"customer_id": "acme", "event_name": "login"}])
    assert client.flush(timeout=15).drained
    assert adapter.sends == 2
    assert [e["idempotencyKey"] for e in fake.account.events] == [receipt.idempotency_key]
    assert "stigg-cache-flusher" in {t.name for t in threading.enumerate()}
