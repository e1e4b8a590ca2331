"""consume(): check and enqueue as one step, across threads and processes (DESIGN §8)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from stigg_cache import (
    AsyncResilientClient,
    Consumption,
    ResilientClient,
    Source,
)
from stigg_cache.testing import runtime_of
from stigg_cache.testing.fake import FakeMode, FakeStigg, metered
from tests.conftest import API_KEY
from tests.forking import child_result, fork_child, in_child
from tests.helpers import client_on, metered_fallback

LIMIT = 100
PROCESSES = 4
THREADS = 8
TRIES_PER_THREAD = 5  # 4 x 8 x 5 = 160 attempts at a limit of 100
POLICY = metered_fallback(LIMIT)


def _client(fake: FakeStigg, store_url: str) -> ResilientClient:
    return client_on(fake, store_url, policy=POLICY)


def _spend(client: ResilientClient, customer: str, tries: int) -> int:
    """Consume one unit ``tries`` times from ``THREADS`` threads; how many were granted."""
    granted: list[Consumption] = []

    def worker() -> None:
        for _ in range(tries):
            result = client.consume(customer, "api_calls")
            if result.granted:
                granted.append(result)

    threads = [threading.Thread(target=worker) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return len(granted)


def _queued_units(client: ResilientClient, customer: str) -> float:
    outbox = runtime_of(client).parts.usage.outbox  # the shared file: every process's records
    return sum(
        record.value or 0.0
        for record, _ in outbox.unsettled()
        if record.customer_id == customer and record.name == "api_calls"
    )


def _from_processes(client: ResilientClient, customer: str) -> list[int]:
    """``PROCESSES`` forked workers of one client, all spending at once."""
    pids = [
        fork_child(lambda: _spend(client, customer, TRIES_PER_THREAD)) for _ in range(PROCESSES)
    ]
    return [child_result(pid) for pid in pids]


def test_consume_grants_what_fits_and_enqueues_only_what_it_grants(
    fake: FakeStigg, store_url: str
) -> None:
    client = _client(fake, store_url)  # acme: api_calls 40 of 100 used
    spent = client.consume("acme", "api_calls", 60, idempotency_key="first")
    refused = client.consume("acme", "api_calls")
    assert spent.granted
    assert spent.receipt is not None
    assert spent.receipt.idempotency_key == "first"
    assert (spent.entitlement.current_usage, spent.entitlement.decision.source) == (
        40.0,
        Source.LIVE,
    )
    assert not refused.granted
    assert refused.receipt is None
    assert refused.entitlement.current_usage == 100.0
    assert refused.entitlement.access_denied_reason == "RequestedUsageExceedingLimit"
    assert _queued_units(client, "acme") == 60.0
    client.close()


@pytest.mark.parametrize(("amount", "error"), [(0, ValueError), (-1, ValueError), ("1", TypeError)])
def test_consume_refuses_an_amount_that_is_not_a_positive_number(
    fake: FakeStigg, store_url: str, amount: Any, error: type[Exception]
) -> None:
    client = _client(fake, store_url)
    with pytest.raises(error, match="amount"):
        client.consume("acme", "api_calls", amount)
    client.close()


def test_threads_of_forked_workers_never_grant_past_the_limit_while_stigg_is_down(
    fake: FakeStigg, store_url: str
) -> None:
    client = _client(fake, store_url)
    fake.set_mode(FakeMode.DOWN)  # no snapshot: the policy's usage_limit of 100 decides
    granted = _from_processes(client, "offline-customer")
    assert sum(granted) == LIMIT
    assert _queued_units(client, "offline-customer") == LIMIT
    client.close()


def test_threads_of_forked_workers_never_grant_past_the_limit_while_stigg_lags(
    fake: FakeStigg, store_url: str
) -> None:
    fake.account.aggregation_delay_s = 3600.0  # Stigg counts what it gets, much later
    fake.set_customer("lagging", [metered("api_calls", limit=LIMIT, usage=0)])
    client = _client(fake, store_url)
    assert client.consume("lagging", "api_calls").granted  # the snapshot is now held
    granted = _from_processes(client, "lagging")
    assert sum(granted) == LIMIT - 1
    assert _queued_units(client, "lagging") == LIMIT  # pending or sent, each unit once
    client.close()


def test_a_consumption_retried_with_its_key_is_its_first_receipt_in_any_worker(
    fake: FakeStigg, store_url: str
) -> None:
    """Issue 28 #8: each call stamped a new ``createdAt``, so a retry raised ValueError
    ("already used for different usage"); and keys were global across customers."""
    fake.set_customer("beta", [metered("api_calls", limit=100, usage=0)])
    client = _client(fake, store_url)
    first = client.consume("acme", "api_calls", 5, idempotency_key="order-1")

    def retry() -> tuple[bool, bool, str]:  # in another worker, a moment later
        again = client.consume("acme", "api_calls", 5, idempotency_key="order-1")
        assert again.receipt is not None
        return again.granted, again.receipt.duplicate, again.receipt.idempotency_key

    assert first.receipt is not None
    assert (first.granted, first.receipt.duplicate) == (True, False)
    assert in_child(retry) == [True, True, "order-1"]
    other = client.consume("beta", "api_calls", 5, idempotency_key="order-1")  # beta's key
    assert other.receipt is not None
    assert (other.granted, other.receipt.duplicate) == (True, False)
    with pytest.raises(ValueError, match="already used for different usage"):
        client.consume("acme", "api_calls", 6, idempotency_key="order-1")  # other usage
    assert (_queued_units(client, "acme"), _queued_units(client, "beta")) == (5.0, 5.0)
    assert client.flush(timeout=10).drained
    assert [u["customerId"] for u in fake.account.usages] == ["acme", "beta"]
    client.close()


def test_an_awaited_consumption_retried_with_its_key_is_its_first_receipt(
    fake: FakeStigg, store_url: str
) -> None:
    async def story() -> list[tuple[bool, bool]]:
        async with AsyncResilientClient(
            None, api_key=API_KEY, base_url=fake.url, store=store_url, policy=POLICY
        ) as client:
            spent = [
                await client.consume("acme", "api_calls", 5, idempotency_key="order-2")
                for _ in range(2)
            ]
            return [(s.granted, s.receipt is not None and s.receipt.duplicate) for s in spent]

    assert asyncio.run(story()) == [(True, False), (True, True)]
