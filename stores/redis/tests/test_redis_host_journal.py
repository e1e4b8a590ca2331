"""The host's journal of offline decisions on Redis: the SQLite tests, run on Redis (#29 item 7).

A worker killed or restarted during the outage still has its decisions
reported; a sibling reconciling reports the others'; two reconciling at once
report each decision once. Only the store differs.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import fake  # the same fake (and key) as the SQLite runs
from tests.test_host_journal import (
    test_a_sibling_reconciling_reports_the_other_workers_decisions,
    test_a_worker_restarted_mid_outage_still_has_its_decisions_reported,
    test_the_hosts_journal_keeps_the_usage_each_decision_counted_and_reads_older_rows,
    test_the_hosts_journal_sums_alike_decisions_within_its_bound_and_is_taken_once,
    test_two_workers_reconciling_at_once_report_each_decision_once,
)

from conftest import url_for

__all__ = [
    "fake",
    "test_a_sibling_reconciling_reports_the_other_workers_decisions",
    "test_a_worker_restarted_mid_outage_still_has_its_decisions_reported",
    "test_the_hosts_journal_keeps_the_usage_each_decision_counted_and_reads_older_rows",
    "test_the_hosts_journal_sums_alike_decisions_within_its_bound_and_is_taken_once",
    "test_two_workers_reconciling_at_once_report_each_decision_once",
]


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    """Store and outbox in Redis (the fleet's), each test in a namespace of its own."""
    return url_for(tmp_path)
