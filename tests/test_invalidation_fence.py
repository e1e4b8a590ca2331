"""A fetch in flight never outlives an invalidation (#28 item 5).

A worker's fetch of a customer left before ``grant_promotional_entitlements()``
and came back after it, with the customer as Stigg saw them before the grant.
Stored as fresh, it answered "not granted" in every worker for ``fresh_for``.
Invalidation fences the scope in the store (a generation, shared by every
process): a fetch that began before it answers the check that waited for it,
and is kept nowhere.
"""

from __future__ import annotations

import asyncio
import multiprocessing
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
    # The check that waited for it has its answer; nothing keeps it after the grant.
    assert in_worker[0] == (False, Source.LIVE.value)
    seen = [*in_worker[1:], *here, *in_a_sibling]
    from_stigg = {(True, Source.LIVE.value), (True, Source.CACHE.value)}
    assert set(seen) <= from_stigg, seen
    if isinstance(client, AsyncResilientClient):
        asyncio.run(client.aclose())
    else:
        client.close()
