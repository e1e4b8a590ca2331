"""The fault log stays bounded whatever ids callers send (#16)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest

from stigg_cache import AsyncResilientClient, Source
from stigg_cache._support.log import LOG_INTERVAL_S, MAX_REMEMBERED, MAX_SHOWN_CHARS, FaultLog
from stigg_cache.testing import ManualClock
from stigg_cache.testing.fake import FakeMode, FakeStigg
from tests.conftest import API_KEY
from tests.helpers import client_on


def test_distinct_keys_are_counted_within_a_bound_and_the_kind_still_logs_each_minute(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = ManualClock()
    log = FaultLog(clock)
    assert log.report("stigg_cache.default_allow", "allowing", key="feature-0")
    for n in range(1, 3 * MAX_REMEMBERED):
        assert not log.report("stigg_cache.default_allow", "allowing", key=f"feature-{n}")
    assert len(log._kinds["stigg_cache.default_allow"].keys) == MAX_REMEMBERED
    clock.advance(LOG_INTERVAL_S)
    with caplog.at_level(logging.WARNING, logger="stigg_cache"):
        assert log.report("stigg_cache.default_allow", "again", key="feature-x")
    (line,) = [r for r in caplog.records if "again" in r.getMessage()]
    assert "30,000 times, 10,000+ distinct, in the 60s since the last line" in line.getMessage()
    assert log.counts["stigg_cache.default_allow"] == 3 * MAX_REMEMBERED + 1
    assert log.report("stigg_cache.hook_failed", "a hook raised")  # each kind its own minute


def test_long_ids_are_cut_short_in_log_lines(
    fake: FakeStigg, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    client = client_on(fake, tmp_path)
    fake.set_mode(FakeMode.DOWN)
    feature = "f" * 1000  # the longest id a check takes
    with caplog.at_level(logging.WARNING, logger="stigg_cache"):
        client.get_boolean_entitlement(customer_id="acme", feature_id=feature)
    (line,) = [r for r in caplog.records if "default_allow" in r.getMessage()]
    assert len(line.getMessage()) < 2 * MAX_SHOWN_CHARS + 400
    assert "(1,000 chars)" in line.getMessage()
    client.close()


@pytest.mark.parametrize("worker", ["threads", "asyncio"])
def test_a_kind_of_fault_is_one_line_a_minute_with_its_count_whatever_its_keys(
    fake: FakeStigg, tmp_path: Path, caplog: pytest.LogCaptureFixture, worker: str
) -> None:
    """500 distinct unknown feature ids while Stigg is down: one WARNING line, then the
    next a minute later saying how many checks and how many features it stands for."""
    clock = ManualClock()
    fake.set_mode(FakeMode.DOWN)

    def lines() -> list[logging.LogRecord]:
        return [r for r in caplog.records if getattr(r, "event", "") == "stigg_cache.default_allow"]

    async def checks(client: Any, first: int, count: int) -> None:
        for n in range(first, first + count):
            answer = client.get_boolean_entitlement(customer_id="acme", feature_id=f"new-{n}")
            if worker == "asyncio":
                answer = await answer
            assert answer.decision.source is Source.DEFAULT

    async def story(client: Any) -> None:
        with caplog.at_level(logging.WARNING, logger="stigg_cache"):
            await checks(client, 0, 500)
            assert len(lines()) == 1
            clock.advance(LOG_INTERVAL_S)
            await checks(client, 500, 1)
        (first, second) = lines()
        assert "feature 'new-0'" in first.getMessage()
        assert "times" not in first.getMessage()
        assert "500 times, 500 distinct" in second.getMessage()
        assert (second.event_occurrences, second.event_keys) == (500, 500)  # type: ignore[attr-defined]
        assert second.event_count == 501  # type: ignore[attr-defined]

    options: dict[str, Any] = {"clock": clock, "store": f"sqlite:///{tmp_path}/cache.db"}
    if worker == "threads":
        with client_on(fake, tmp_path, **options) as client:
            asyncio.run(story(client))
    else:

        async def on_a_loop() -> None:
            async with AsyncResilientClient(
                None, api_key=API_KEY, base_url=fake.url, check_timeout=1.0, **options
            ) as client:
                await story(client)

        asyncio.run(on_a_loop())
