"""A customer's usage a worker could not read from Redis is never judged in part.

A worker reads a customer's usage from the fleet's outbox when a check first
needs it. When that read failed (Redis down, or a read of 20,000 records timing
out under load), the check answered with what the worker itself had reported:
none of its siblings' usage, so a customer at the limit was granted. Seen as a
flake of ``test_threads_checking_a_customer_not_yet_read_all_wait_for_its_whole_usage``.
A check (or a consumption) whose usage is not all known is denied instead.
And the gate's "unavailable" message keeps its cause when another call succeeds.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest
import redis

from stigg_cache import AsyncResilientClient, ResilientClient
from stigg_cache.errors import StoreError
from stigg_cache.testing.fake import FakeMode, FakeStigg
from stigg_cache_redis._connection import Gate
from tests.forking import in_child
from tests.helpers import metered_fallback

from conftest import API_KEY, OwnRedis, url_for

LIMIT = 100.0
POLICY = metered_fallback(LIMIT)

Client = ResilientClient | AsyncResilientClient


def _granted(client: Client, amount: float) -> bool:
    if isinstance(client, AsyncResilientClient):
        answer = asyncio.run(
            client.get_metered_entitlement(
                customer_id="c-8", feature_id="api_calls", requested_usage=amount
            )
        )
    else:
        answer = client.get_metered_entitlement(
            customer_id="c-8", feature_id="api_calls", requested_usage=amount
        )
    return answer.has_access


def _consumed(client: Client) -> bool:
    if isinstance(client, AsyncResilientClient):
        return asyncio.run(client.consume("c-8", "api_calls")).granted
    return client.consume("c-8", "api_calls").granted


@pytest.mark.parametrize("asynchronous", [False, True], ids=["threads", "event-loop"])
def test_a_worker_that_cannot_read_a_customers_usage_never_grants_on_part_of_it(
    fake: FakeStigg, own_redis: OwnRedis, tmp_path: Path, asynchronous: bool
) -> None:
    url = url_for(tmp_path, own_redis.url)
    first = ResilientClient(None, api_key=API_KEY, base_url=fake.url, store=url, policy=POLICY)
    make: Any = AsyncResilientClient if asynchronous else ResilientClient
    later: Client = make(None, api_key=API_KEY, base_url=fake.url, store=url, policy=POLICY)
    try:
        fake.set_mode(FakeMode.DOWN)  # the policy's 100 answers; usage waits in Redis
        first.report_usage(customer_id="c-8", feature_id="api_calls", value=LIMIT)
        own_redis.stop()  # before the later worker ever read c-8's usage
        in_a_worker = in_child(lambda: [_granted(later, 1), _consumed(later)])
        here = [_granted(later, 1), _consumed(later)]
    finally:
        if isinstance(later, AsyncResilientClient):
            asyncio.run(later.aclose())
        else:
            later.close()
        first.close()
    assert (in_a_worker, here) == ([False, False], [False, False])  # was all True: 1 of 100


def test_the_gates_message_keeps_its_cause_when_a_call_begun_before_the_fault_succeeds() -> None:
    gate = Gate("redis outbox")
    release = threading.Event()
    slow = threading.Thread(target=gate.call, args=(lambda: release.wait(5),))
    slow.start()  # a call under way when Redis fails

    def refused() -> None:
        raise redis.ConnectionError("Connection refused by 127.0.0.1:1")

    with pytest.raises(StoreError):
        gate.call(refused)
    release.set()  # the call begun before the fault succeeds
    slow.join()
    with pytest.raises(StoreError, match="Connection refused") as raised:
        gate.call(lambda: None)  # the gate is still closed
    assert "None" not in str(raised.value)
