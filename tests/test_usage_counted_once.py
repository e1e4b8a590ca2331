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
from stigg_cache.testing.fake import FakeStigg
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
