"""A snapshot that already counts a record is never added to it (#28 item 7).

Stigg counts a usage report when it takes it in, which is before its answer
reaches us. A snapshot fetched in between already shows the usage, though the
acknowledgement is read after the snapshot: ordered by when the answers arrived
here, the record looked newer than the snapshot, so checks added it once more
(43 + 3 read as 46) until ``settle_s`` had passed. Ordered by the earliest
moment Stigg could have counted it (its request leaving), it is seen as counted.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from stigg_cache import AsyncResilientClient, ResilientClient
from stigg_cache.adapters._stigg_json import UsageCounts
from stigg_cache.adapters.httpx_rest import HttpxRestAdapter
from stigg_cache.core.ledger import DEFAULT_SETTLE_S
from stigg_cache.testing.fake import FakeMode, FakeStigg, metered
from tests.conftest import API_KEY, POLICY
from tests.forking import child_result, fork_child
from tests.helpers import eventually

GATE_LIMIT_S = 20.0  # how long an answer may be held back: room for a loaded machine
CHECKS = 5
SETTLE_S = DEFAULT_SETTLE_S  # POLICY's: usage settles by time alone after this

Client = ResilientClient | AsyncResilientClient


class _AnswersHeldBack(HttpxRestAdapter):
    """The built-in client, whose usage reports reach Stigg at once but whose answers
    arrive only once ``gate`` is set (a slow network on the way back)."""

    def __init__(self, fake: FakeStigg, gate: Any) -> None:
        super().__init__(api_key=API_KEY, base_url=fake.url)
        self.gate = gate

    def report_usage(self, usages: Sequence[Mapping[str, Any]], *, timeout_s: float) -> UsageCounts:
        counts = super().report_usage(usages, timeout_s=timeout_s)
        self.gate.wait(GATE_LIMIT_S)
        return counts


def _usage(client: Client) -> float | None:
    if isinstance(client, AsyncResilientClient):
        answer = asyncio.run(
            client.get_metered_entitlement(customer_id="acme", feature_id="api_calls")
        )
    else:
        answer = client.get_metered_entitlement(customer_id="acme", feature_id="api_calls")
    return answer.current_usage


def _until_43(client: Client, *, within_s: float) -> list[float]:
    """The usage checks read, until one reads 43 (or ``within_s`` passed)."""
    seen: list[float] = []
    deadline = time.monotonic() + within_s
    while not seen or (seen[-1] != 43.0 and time.monotonic() < deadline):
        seen.append(_usage(client) or 0.0)
        time.sleep(0.01)
    return seen


@pytest.mark.parametrize("asynchronous", [False, True], ids=["threads", "event-loop"])
def test_usage_a_snapshot_counts_is_not_added_again_once_stigg_acknowledges_it(
    fake: FakeStigg, store_url: str, asynchronous: bool
) -> None:
    gate = multiprocessing.get_context("fork").Event()  # shared with the forked worker
    make: Any = AsyncResilientClient if asynchronous else ResilientClient
    client: Client = make(
        _AnswersHeldBack(fake, gate),
        store=store_url,
        policy=POLICY,  # fresh for 60 s, settles by time alone after 30 s
        check_timeout=GATE_LIMIT_S,
    )

    def worker() -> bool:  # reports 3 units; Stigg takes them, its answer comes late
        sync = client._core if isinstance(client, AsyncResilientClient) else client
        sync.report_usage(customer_id="acme", feature_id="api_calls", value=3)
        return sync.flush(timeout=2 * GATE_LIMIT_S).drained

    reporter = fork_child(worker)
    eventually(lambda: fake.account.usage_of("acme", "api_calls") == 43.0)  # Stigg counted
    before_the_answer = _usage(client)  # a snapshot of 43 (the 3 not yet acknowledged)
    gate.set()  # the acknowledgement arrives, after that snapshot
    assert child_result(reporter) is True
    eventually(lambda: client.outbox.stats().pending == 0)
    # Counted once as soon as this worker has read the acknowledgement (SYNC_INTERVAL_S);
    # before, it stayed 46 until settle_s (30 s) had passed.
    seen = _until_43(client, within_s=SETTLE_S / 3)
    assert seen[-1] == 43.0, (before_the_answer, len(seen), sorted(set(seen)))
    after = [_usage(client) for _ in range(CHECKS)]
    assert after == [43.0] * CHECKS, (before_the_answer, after)
    if isinstance(client, AsyncResilientClient):
        asyncio.run(client.aclose())
    else:
        client.close()


LOST_LIMIT = 30.0
LOST_TAKEN = 12.0  # reported while Stigg's answers are lost: taken in, never acknowledged
WORKERS = 4


def _used(client: Client, customer: str) -> float:
    if isinstance(client, AsyncResilientClient):
        answer = asyncio.run(client.get_metered_entitlement(customer_id=customer, feature_id="f"))
    else:
        answer = client.get_metered_entitlement(customer_id=customer, feature_id="f")
    return answer.current_usage or 0.0


def _consumed_until_denied(client: Client, customer: str) -> int:
    granted = 0
    while True:
        if isinstance(client, AsyncResilientClient):
            consumption = asyncio.run(client.consume(customer, "f"))
        else:
            consumption = client.consume(customer, "f")
        if not consumption.granted:
            return granted
        granted += 1


@pytest.mark.timeout(120)
@pytest.mark.parametrize("asynchronous", [False, True], ids=["threads", "event-loop"])
def test_usage_whose_answer_was_lost_counts_once_when_its_resend_is_acknowledged(
    fake: FakeStigg, store_url: str, asynchronous: bool
) -> None:
    """Attack F8: Stigg took the reports but their answers were lost (connections reset on
    the way back); a snapshot fetched meanwhile counts them, then the resend is deduplicated
    and acknowledged. Dated at the resend, the acknowledgement looked newer than that
    snapshot, so every check added the usage again until a new snapshot or ``settle_s``:
    24 of 30 read where Stigg had 12, and forked workers' ``consume()`` granted 6 of the
    18 units left. Stigg's answer to the resend says what it counts; from then on, once."""
    fake.set_customer("lost", [metered("f", limit=LOST_LIMIT, usage=0)])
    make: Any = AsyncResilientClient if asynchronous else ResilientClient
    client: Client = make(
        HttpxRestAdapter(api_key=API_KEY, base_url=fake.url),
        store=store_url,
        policy=POLICY,  # fresh for 60 s, settles by time alone after 30 s
        check_timeout=GATE_LIMIT_S,
    )
    try:
        in_doubt, after, granted = _lost_then_resent(fake, client)
    finally:
        if isinstance(client, AsyncResilientClient):
            asyncio.run(client.aclose())
        else:
            client.close()
    assert in_doubt == 2 * LOST_TAKEN  # while in doubt: counted, never under-counted
    assert (after, sum(granted)) == ([LOST_TAKEN] * CHECKS, LOST_LIMIT - LOST_TAKEN), (
        in_doubt,
        granted,
    )


def _lost_then_resent(fake: FakeStigg, client: Client) -> tuple[float, list[float], list[int]]:
    """Report while answers are lost, check in doubt, heal; then check, and consume from
    forked workers until denied: (usage in doubt, usage after, units each worker got)."""
    sync = client._core if isinstance(client, AsyncResilientClient) else client
    fake.set_mode(FakeMode.REPLY_LOST)

    def reporter() -> bool:  # its sends are taken in, their answers lost: it sends again
        for _ in range(4):
            sync.report_usage(customer_id="lost", feature_id="f", value=LOST_TAKEN / 4)
        deadline = time.monotonic() + 2 * GATE_LIMIT_S
        while not sync.flush(timeout=1.0).drained:  # returns at once while its breaker is open
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    sending = fork_child(reporter, limit_s=60)
    eventually(lambda: fake.account.usage_of("lost", "f") == LOST_TAKEN)
    in_doubt = _used(client, "lost")  # a snapshot of 12; the 12 not yet acknowledged
    fake.set_mode(FakeMode.UP)  # the resends are answered (Stigg deduplicates them)
    assert child_result(sending) is True
    eventually(lambda: client.outbox.stats().pending == 0)
    after = [_used(client, "lost") for _ in range(CHECKS)]
    workers = [fork_child(lambda: _consumed_until_denied(client, "lost")) for _ in range(WORKERS)]
    return in_doubt, after, [child_result(pid) for pid in workers]
