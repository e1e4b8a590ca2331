"""A worker with nothing of its own to ask Stigg still learns that Stigg is back.

Two workers of a host share one outbox. Stigg goes down; each consumes offline and
its breaker opens. Stigg comes back; the worker whose breaker is due first sends
every record of the shared outbox, its sibling's too. The sibling, its backoff
passed, finds nothing to send and gets no check: before, nothing ever asked its
breaker again, so it stayed OFFLINE for good (``status()`` said Stigg was down
while it was fine) and never reconciled what it decided offline. Now its flusher,
idle, probes Stigg once its backoff has passed (a read of a customer it asked
about, through the read budget): it goes CONNECTED and reconciles.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from stigg_cache import (
    AsyncResilientClient,
    CircuitBreaker,
    ConnectionState,
    ReconcileReport,
    ResilientClient,
)
from stigg_cache.testing import runtime_of
from stigg_cache.testing.fake import FakeMode, FakeStigg, metered
from tests.conftest import API_KEY
from tests.forking import child_result, fork_child
from tests.helpers import eventually, metered_fallback

SENDER_BACKOFF_S = 0.05
# The idle worker's backoff: long beside the time its sibling takes to send everything
# once Stigg is back, so its flusher finds the shared outbox empty when its probe is due.
IDLE_BACKOFF_S = 4.0
IDLE_CONSUMES = 2
SENDER_CONSUMES = 2
WAIT_S = 30.0  # how long the idle worker waits to hear of Stigg (a loaded machine)
CHILD_LIMIT_S = 90


def _options(fake: FakeStigg, tmp_path: Path, backoff_s: float) -> dict[str, Any]:
    return {
        "api_key": API_KEY,
        "base_url": fake.url,
        "store": f"sqlite:///{tmp_path}/cache.db",  # the outbox beside it: the host's
        "policy": metered_fallback(1e9),  # Stigg down: the fallback grants
        "check_timeout": 1.0,
        "breaker": CircuitBreaker(
            failure_threshold=1,
            base_backoff_s=backoff_s,
            max_backoff_s=backoff_s,
            jitter=lambda: 1.0,  # the whole backoff: never shorter
        ),
    }


def _seen(client: ResilientClient, reports: list[ReconcileReport]) -> dict[str, Any]:
    runtime = runtime_of(client)
    return {
        "state": runtime.parts.health.state.value,
        "breaker": runtime.parts.health.breaker_state.value,
        "reports": [
            {"checked": r.decisions_checked, "refreshed": r.customers_refreshed} for r in reports
        ],
        "sent": runtime.parts.usage.flusher.sent,
    }


def _wait_to_hear_of_stigg(client: ResilientClient, reports: list[ReconcileReport]) -> None:
    """Until the client is CONNECTED and has reconciled (bounded): doing nothing else."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if client.status().state is ConnectionState.CONNECTED and reports:
            return
        time.sleep(0.05)


def _idle_worker(
    fake: FakeStigg, tmp_path: Path, offline: Path, *, asynchronous: bool
) -> dict[str, Any]:
    """A worker started after the fork: consumes while Stigg is down, then does nothing
    but wait to hear that Stigg is back (and reconcile). What it saw, by then."""
    options = _options(fake, tmp_path, IDLE_BACKOFF_S)
    if asynchronous:
        return asyncio.run(_idle_on_a_loop(options, offline))
    client = ResilientClient(None, **options)
    reports: list[ReconcileReport] = []
    client.on_reconcile(reports.append)
    for _ in range(IDLE_CONSUMES):
        assert client.consume("globex", "api_calls").granted
    offline.touch()
    _wait_to_hear_of_stigg(client, reports)
    seen = _seen(client, reports)
    client.close()
    return seen


async def _idle_on_a_loop(options: dict[str, Any], offline: Path) -> dict[str, Any]:
    client = AsyncResilientClient(None, **options)
    reports: list[ReconcileReport] = []
    client.on_reconcile(reports.append)
    for _ in range(IDLE_CONSUMES):
        assert (await client.consume("globex", "api_calls")).granted
    await asyncio.to_thread(offline.touch)
    await asyncio.to_thread(_wait_to_hear_of_stigg, client._core, reports)  # the loop runs on
    seen = _seen(client._core, reports)
    await client.aclose()
    return seen


@pytest.mark.parametrize("asynchronous", [False, True], ids=["threads", "event-loop"])
def test_a_worker_whose_usage_a_sibling_sent_learns_stigg_is_back_and_reconciles(
    fake: FakeStigg, tmp_path: Path, asynchronous: bool
) -> None:
    fake.set_customer("globex", [metered("api_calls", limit=1000, usage=0)])
    fake.set_mode(FakeMode.DOWN)
    offline = tmp_path / "idle-worker-offline"
    idle = fork_child(
        lambda: _idle_worker(fake, tmp_path, offline, asynchronous=asynchronous),
        limit_s=CHILD_LIMIT_S,
    )
    eventually(offline.exists, within_s=WAIT_S)  # its breaker is open, its usage queued
    reports: list[ReconcileReport] = []
    with ResilientClient(None, **_options(fake, tmp_path, SENDER_BACKOFF_S)) as sender:
        sender.on_reconcile(reports.append)
        for _ in range(SENDER_CONSUMES):
            assert sender.consume("globex", "api_calls").granted
        fake.set_mode(FakeMode.UP)  # the sender's probe is due first: it sends every record
        eventually(lambda: sender.status().outbox_depth == 0 and bool(reports), within_s=WAIT_S)
        seen = child_result(idle)
    assert seen["state"] == ConnectionState.CONNECTED.value, seen
    assert seen["breaker"] == "closed", seen
    assert len(seen["reports"]) == 1, seen
    assert seen["reports"][0]["refreshed"] >= 1, seen  # globex, which it consumed offline
    # The host's offline decisions, each reported once by one of the two.
    checked = reports[0].decisions_checked + seen["reports"][0]["checked"]
    assert checked == IDLE_CONSUMES + SENDER_CONSUMES, (reports, seen)
    assert len(fake.account.usages) == IDLE_CONSUMES + SENDER_CONSUMES


def _one_client(fake: FakeStigg, tmp_path: Path, **breaker: Any) -> ResilientClient:
    options = _options(fake, tmp_path, SENDER_BACKOFF_S)
    options["breaker"] = CircuitBreaker(jitter=lambda: 1.0, **breaker)
    return ResilientClient(None, **options)


def test_a_client_left_degraded_with_nothing_to_ask_learns_stigg_is_back_and_reconciles(
    fake: FakeStigg, tmp_path: Path
) -> None:
    """One failure, below the breaker's threshold: the state is DEGRADED, requests still
    flow, but none comes (no check, nothing to send). Before, it stayed DEGRADED."""
    fake.set_customer("globex", [metered("api_calls", limit=1000, usage=0)])
    reports: list[ReconcileReport] = []
    with _one_client(
        fake, tmp_path, failure_threshold=100, base_backoff_s=0.05, max_backoff_s=0.05
    ) as client:
        client.on_reconcile(reports.append)
        fake.set_mode(FakeMode.DOWN)
        assert client.get_metered_entitlement(customer_id="globex", feature_id="api_calls")
        assert client.status().state is ConnectionState.DEGRADED
        fake.set_mode(FakeMode.UP)
        eventually(
            lambda: client.status().state is ConnectionState.CONNECTED and bool(reports),
            within_s=WAIT_S,
        )
    assert reports[0].decisions_checked == 1
    assert reports[0].customers_refreshed == 1


PROBE_BACKOFF_S = 0.2
IDLE_FOR_S = 2.0


def test_an_idle_client_probes_a_failing_stigg_within_its_backoff_and_not_after_close(
    fake: FakeStigg, tmp_path: Path
) -> None:
    """Stigg answers 503 and the client asks it nothing: its probes are reads, as many as
    its backoff allows at most (not one before); none once it is closed."""

    def reads() -> int:
        return sum(1 for _, _, path, *_ in fake.log if "entitlements" in path)

    with _one_client(
        fake,
        tmp_path,
        failure_threshold=1,
        base_backoff_s=PROBE_BACKOFF_S,
        max_backoff_s=PROBE_BACKOFF_S,
    ) as client:
        fake.set_mode(FakeMode.ERROR_5XX)
        client.get_boolean_entitlement(customer_id="acme", feature_id="sso")  # it opens
        started, before = time.monotonic(), reads()
        eventually(lambda: reads() > before, within_s=WAIT_S)  # it probes, by itself
        time.sleep(IDLE_FOR_S)
        idle_s, probes = time.monotonic() - started, reads() - before
        # jittered into [0.5, 1) of the backoff: at most one probe per half of it
        assert probes <= idle_s / (PROBE_BACKOFF_S / 2) + 1, (probes, idle_s)
        # OFFLINE between probes, DEGRADED while one is out (half-open): never CONNECTED
        assert client.status().state is not ConnectionState.CONNECTED
    closed = reads()
    time.sleep(IDLE_FOR_S / 2)
    assert reads() == closed
