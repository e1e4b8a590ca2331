"""Misconfiguration is loud (DESIGN §11): a refused API key on the check path.

With a wrong key every check still answers (from the policy), but the client
says why: DEGRADED with ``auth_error`` in ``status()``, an ERROR line once a
minute while it lasts, and a count in ``status().faults`` and the metrics. It
is our key, not Stigg's health: the breaker stays closed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from stigg_cache import AsyncResilientClient, ConnectionState, ResilientClient, Source, Status
from stigg_cache.metrics import ClientCollector
from stigg_cache.testing import ManualClock
from stigg_cache.testing.fake import FakeStigg
from tests.conftest import POLICY

WRONG_KEY = "sk-wrong-0123456789abcdef"
REFUSED = "stigg_cache.auth_refused"


def _refusals(caplog: pytest.LogCaptureFixture) -> list[int]:
    """The level of each line logged about the refused key."""
    return [r.levelno for r in caplog.records if getattr(r, "event", None) == REFUSED]


def _faults_metric(client: ResilientClient) -> float:
    (faults,) = [m for m in ClientCollector(client).collect() if m.name == "stigg_cache_faults"]
    return sum(s.value for s in faults.samples if s.labels["event"] == REFUSED)


def _assert_refused(status: Status, refusals: int) -> None:
    assert status.state is ConnectionState.DEGRADED
    assert status.auth_error is not None
    assert "401" in status.auth_error
    assert status.breaker == "closed"  # our key, not Stigg's health
    assert status.faults[REFUSED] == refusals


def _story(
    fake: FakeStigg,
    clock: ManualClock,
    caplog: pytest.LogCaptureFixture,
    check: Callable[[str], Source],
    status: Callable[[], Status],
    core: ResilientClient,
) -> None:
    """Five refused checks, a minute later one more, then the key is accepted."""
    assert [check(f"c-{n}") for n in range(5)] == [Source.DEFAULT] * 5
    _assert_refused(status(), 5)
    assert _refusals(caplog) == [logging.ERROR]  # once, whatever the number of checks
    assert _faults_metric(core) == 5
    clock.advance(61)
    check("c-5")
    _assert_refused(status(), 6)
    assert _refusals(caplog) == [logging.ERROR, logging.ERROR]  # once a minute while it lasts
    fake.api_key = WRONG_KEY  # the key is accepted (rotated on Stigg's side)
    assert check("acme") is Source.LIVE
    assert (status().state, status().auth_error) == (ConnectionState.CONNECTED, None)
    assert WRONG_KEY not in caplog.text


def test_a_refused_key_on_checks_is_degraded_logged_once_a_minute_and_counted(
    fake: FakeStigg, tmp_path: Path, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="stigg_cache")
    with ResilientClient(
        None,
        api_key=WRONG_KEY,
        base_url=fake.url,
        store=f"sqlite:///{tmp_path}/cache.db",
        policy=POLICY,
        clock=clock,
        check_timeout=2.0,
    ) as client:

        def check(customer: str) -> Source:
            answer = client.get_boolean_entitlement(customer_id=customer, feature_id="sso")
            return answer.decision.source

        _story(fake, clock, caplog, check, client.status, client)


def test_the_async_client_shows_a_refused_key_the_same_way(
    fake: FakeStigg, tmp_path: Path, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="stigg_cache")

    async def main() -> None:
        async with AsyncResilientClient(
            None,
            api_key=WRONG_KEY,
            base_url=fake.url,
            store=f"sqlite:///{tmp_path}/cache.db",
            policy=POLICY,
            clock=clock,
            check_timeout=2.0,
        ) as client:
            loop = asyncio.get_running_loop()

            def check(customer: str) -> Source:  # the loop's check, awaited from a thread
                answer = asyncio.run_coroutine_threadsafe(
                    client.get_boolean_entitlement(customer_id=customer, feature_id="sso"), loop
                ).result(timeout=30)
                return answer.decision.source

            await asyncio.to_thread(_story, fake, clock, caplog, check, client.status, client._core)

    asyncio.run(main())
