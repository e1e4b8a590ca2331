"""The fault log stays bounded whatever ids callers send (#16)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from stigg_cache._log import MAX_REMEMBERED, MAX_SHOWN_CHARS, FaultLog
from stigg_cache.testing import ManualClock
from stigg_cache.testing.fake import FakeMode, FakeStigg
from tests.helpers import client_on


def test_the_once_a_minute_table_is_bounded_and_keeps_working() -> None:
    log = FaultLog(ManualClock())
    for n in range(3 * MAX_REMEMBERED):
        assert log.report("stigg_cache.default_allow", "allowing", key=f"feature-{n}")
    assert len(log._last) <= MAX_REMEMBERED
    assert not log.report(
        "stigg_cache.default_allow", "again", key=f"feature-{3 * MAX_REMEMBERED - 1}"
    )
    assert log.counts["stigg_cache.default_allow"] == 3 * MAX_REMEMBERED + 1


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
