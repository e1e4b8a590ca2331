"""A check never waits on the network longer than check_timeout, whatever the inner client does."""

from __future__ import annotations

import threading
import time

import pytest

from stigg_cache import ResilientClient, Source
from stigg_cache.testing.fake import FakeMode, FakeStigg
from tests.conftest import API_KEY, MakeClient

CHECK_TIMEOUT_S = 0.3
SCHEDULING_MARGIN_S = 0.25  # thread wake-up on a loaded 2-core machine


def _timed_check(client: ResilientClient, customer_id: str) -> tuple[float, Source]:
    started = time.monotonic()
    result = client.get_boolean_entitlement(customer_id=customer_id, feature_id="sso")
    return time.monotonic() - started, result.decision.source


@pytest.mark.parametrize("mode", [FakeMode.BLACKHOLE, FakeMode.TRICKLE, FakeMode.SLOW])
@pytest.mark.parametrize("inner", ["sdk", "builtin"])
def test_check_returns_within_budget_against_a_stuck_stigg(
    fake: FakeStigg, make_client: MakeClient, mode: FakeMode, inner: str
) -> None:
    options = {} if inner == "sdk" else {"inner": None, "api_key": API_KEY, "base_url": fake.url}
    client = make_client(check_timeout=CHECK_TIMEOUT_S, **options)
    fake.set_mode(mode, delay_s=5.0)
    elapsed, source = _timed_check(client, "acme")
    assert source is Source.DEFAULT
    assert elapsed < CHECK_TIMEOUT_S + SCHEDULING_MARGIN_S


def test_trickled_body_is_abandoned_by_the_builtin_client_at_its_deadline(
    fake: FakeStigg,
) -> None:
    from stigg_cache.adapters.httpx_rest import HttpxRestAdapter
    from stigg_cache.errors import FailureKind, StiggUnavailableError

    adapter = HttpxRestAdapter(api_key=API_KEY, base_url=fake.url)
    fake.set_mode(FakeMode.TRICKLE)
    started = time.monotonic()
    with pytest.raises(StiggUnavailableError) as caught:
        adapter.fetch_entitlements("acme", None, timeout_s=0.5)
    assert caught.value.kind is FailureKind.TIMEOUT
    # Each byte arrives well within httpx's per-read timeout; only our total deadline ends it.
    assert time.monotonic() - started < 0.5 + SCHEDULING_MARGIN_S
    adapter.close()


def test_many_concurrent_checks_all_meet_the_budget_while_blackholed(
    fake: FakeStigg, make_client: MakeClient
) -> None:
    client = make_client(check_timeout=CHECK_TIMEOUT_S)
    fake.set_mode(FakeMode.BLACKHOLE)
    timings: list[float] = []

    def worker(n: int) -> None:
        for i in range(5):
            elapsed, _ = _timed_check(client, f"customer-{n}-{i}")
            timings.append(elapsed)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(timings) == 40
    assert max(timings) < CHECK_TIMEOUT_S + SCHEDULING_MARGIN_S


def test_slow_answer_that_lands_after_the_deadline_still_fills_the_cache(
    fake: FakeStigg, make_client: MakeClient
) -> None:
    client = make_client(check_timeout=0.1)
    fake.set_mode(FakeMode.SLOW, delay_s=0.4)
    first = client.get_boolean_entitlement(customer_id="acme", feature_id="sso")
    assert first.decision.source is Source.DEFAULT
    time.sleep(0.8)
    second = client.get_boolean_entitlement(customer_id="acme", feature_id="sso")
    assert second.decision.source is Source.CACHE
