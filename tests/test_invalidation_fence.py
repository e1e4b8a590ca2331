"""A fetch in flight never outlives an invalidation (#28 item 5).

A worker's fetch of a customer left before ``grant_promotional_entitlements()``
and came back after it, with the customer as Stigg saw them before the grant.
Stored as fresh, it answered "not granted" in every worker for ``fresh_for``.
Invalidation fences the scope in the store (a generation, shared by every
process): a fetch that began before it answers no check and is kept nowhere;
Stigg is asked again (checks begun after the invalidation may be waiting for it).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import threading
from typing import Any

import pytest

from stigg_cache import AsyncResilientClient, ResilientClient, Source
from stigg_cache.adapters.httpx_rest import HttpxRestAdapter
from stigg_cache.models import Snapshot
from stigg_cache.testing.fake import FakeStigg
from tests.conftest import API_KEY, POLICY
from tests.forking import child_result, fork_child, in_child
from tests.helpers import eventually

GATE_LIMIT_S = 20.0  # how long an answer may be held back: room for a loaded machine
CHECKS = 3

Client = ResilientClient | AsyncResilientClient


class _AnswersHeldBack(HttpxRestAdapter):
    """The built-in client, whose entitlement reads Stigg answers at once but whose
    answers arrive only once ``gate`` is set (a slow network on the way back)."""

    def __init__(self, fake: FakeStigg, gate: Any) -> None:
        super().__init__(api_key=API_KEY, base_url=fake.url)
        self.gate = gate

    def fetch_entitlements(
        self, customer_id: str, resource_id: str | None, *, timeout_s: float
    ) -> Snapshot:
        snapshot = super().fetch_entitlements(customer_id, resource_id, timeout_s=timeout_s)
        self.gate.wait(GATE_LIMIT_S)
        return snapshot


def _reports(client: Client) -> tuple[bool, str]:
    """Whether acme has ``reports``, and which tier said so."""
    if isinstance(client, AsyncResilientClient):
        answer = asyncio.run(
            client.get_boolean_entitlement(customer_id="acme", feature_id="reports")
        )
    else:
        answer = client.get_boolean_entitlement(customer_id="acme", feature_id="reports")
    return answer.has_access, answer.decision.source.value


@pytest.mark.parametrize("asynchronous", [False, True], ids=["threads", "event-loop"])
def test_a_fetch_begun_before_a_grant_is_kept_by_no_worker(
    fake: FakeStigg, store_url: str, asynchronous: bool
) -> None:
    gate = multiprocessing.get_context("fork").Event()  # shared with the forked workers
    make: Any = AsyncResilientClient if asynchronous else ResilientClient
    client: Client = make(
        _AnswersHeldBack(fake, gate), store=store_url, policy=POLICY, check_timeout=GATE_LIMIT_S
    )
    sync = client._core if isinstance(client, AsyncResilientClient) else client

    def worker() -> list[tuple[bool, str]]:  # its fetch leaves before the grant, lands after
        first = _reports(client)
        eventually(lambda: not sync._runtime.parts.fetcher._persisting)  # in the store, if it may
        return [first, *(_reports(client) for _ in range(CHECKS))]

    fetching = fork_child(worker)
    eventually(lambda: fake.entitlement_requests() == 1)  # Stigg answered: not granted
    sync.grant_promotional_entitlements("acme", [{"feature_id": "reports", "period": "1 month"}])
    gate.set()  # the worker's answer arrives, after the grant
    in_worker = [tuple(answer) for answer in child_result(fetching)]  # JSON: lists
    here = [_reports(client) for _ in range(CHECKS)]
    in_a_sibling = [tuple(a) for a in in_child(lambda: [_reports(client) for _ in range(CHECKS)])]
    # The check that waited for it has Stigg's answer asked again; nothing keeps the first.
    assert in_worker[0] == (True, Source.LIVE.value)
    seen = [*in_worker[1:], *here, *in_a_sibling]
    from_stigg = {(True, Source.LIVE.value), (True, Source.CACHE.value)}
    assert set(seen) <= from_stigg, seen
    if isinstance(client, AsyncResilientClient):
        asyncio.run(client.aclose())
    else:
        client.close()


@pytest.mark.parametrize("asynchronous", [False, True], ids=["threads", "event-loop"])
def test_a_check_begun_after_a_grant_gets_no_fetch_begun_before_it_in_any_worker(
    fake: FakeStigg, store_url: str, asynchronous: bool
) -> None:
    """Attack F2: a worker's fetch left before another client's grant and lands after it.
    A check this worker began once the grant had returned joined that fetch and was
    answered "not granted" (LIVE); one made while the fetch was in L1, before its fenced
    write was refused, was answered from L1 (CACHE). A fetch an invalidation overtook
    answers no check and is held nowhere: it is asked again."""
    forked = multiprocessing.get_context("fork")
    gate, granted = forked.Event(), forked.Event()  # shared with the forked worker
    make: Any = AsyncResilientClient if asynchronous else ResilientClient
    client: Client = make(
        _AnswersHeldBack(fake, gate), store=store_url, policy=POLICY, check_timeout=GATE_LIMIT_S
    )
    sync = client._core if isinstance(client, AsyncResilientClient) else client

    def worker() -> list[tuple[bool, str]]:
        fetcher = sync._runtime.parts.fetcher
        in_flight = threading.Semaphore(0)
        flight = fetcher._flight

        def noted(*args: Any) -> Any:  # a check has started or joined the flight
            found = flight(*args)
            in_flight.release()
            return found

        vars(fetcher)["_flight"] = noted  # this worker's fetcher only
        answers: dict[str, tuple[bool, str]] = {}

        def check(name: str) -> None:
            answers[name] = _reports(client)

        before = threading.Thread(target=check, args=("before",))
        before.start()
        in_flight.acquire()  # its fetch has left; Stigg's answer is held back
        granted.wait(GATE_LIMIT_S)
        after = threading.Thread(target=check, args=("after",))
        after.start()
        in_flight.acquire()  # begun after the grant returned, it waits for that fetch
        gate.set()  # the answer of the fetch begun before the grant arrives
        before.join()
        after.join()
        return [answers["after"], *(_reports(client) for _ in range(CHECKS))]

    fetching = fork_child(worker)
    eventually(lambda: fake.entitlement_requests() == 1)  # Stigg answered: not granted
    sync.grant_promotional_entitlements("acme", [{"feature_id": "reports", "period": "1 month"}])
    granted.set()
    seen = [tuple(answer) for answer in child_result(fetching)]  # JSON: lists
    if isinstance(client, AsyncResilientClient):
        asyncio.run(client.aclose())
    else:
        client.close()
    assert {granted for granted, _ in seen} == {True}, seen
