"""Dead letters shared by the workers of a host: filing one never fails (issue 28 #3).

The SQLite outbox filed a refused record under its outbox row id, which SQLite gives
again once the row is gone: the next record refused under that id failed with ``UNIQUE
constraint failed: dead_letters.id``, stayed pending, was resent once per lease for ever
and counted as usage. Records past Stigg's 7-day window went the same way.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from stigg_cache.testing.fake import FakeStigg
from tests.forking import in_child
from tests.helpers import client_on


@pytest.mark.parametrize("why", ["refused", "expired"])
def test_a_record_dead_lettered_under_a_number_used_before_counts_nowhere_and_stays_dead(
    fake: FakeStigg, store_url: str, why: str
) -> None:
    client = client_on(fake, store_url, outbox_lease_s=1.0)  # acme: api_calls 40 of 100
    fake.account.rejected_customers.add("acme")

    def sibling() -> tuple[int, int]:  # a refusal: its outbox row goes, its number is free
        client.report_usage(customer_id="acme", feature_id="api_calls", value=1)
        result = client.flush(timeout=10)
        return result.pending, result.dead_letters

    assert in_child(sibling) == [0, 1]
    if why == "expired":  # accepted, but older than Stigg's dedup window: never sent
        fake.account.rejected_customers.clear()
    eight_days_ago = datetime.now(UTC) - timedelta(days=8)
    client.report_usage(
        customer_id="acme",
        feature_id="api_calls",
        value=1_000,
        created_at=eight_days_ago if why == "expired" else None,
    )
    client.flush(timeout=5)
    fake.account.rejected_customers.clear()
    client.report_usage(customer_id="acme", feature_id="api_calls", value=10)
    client.flush(timeout=5)
    used = client.get_metered_entitlement(customer_id="acme", feature_id="api_calls")
    status = client.status()
    letters = [(d.record.value, d.reason.split(":")[0]) for d in client.outbox.dead_letters()]
    client.close()
    assert (used.current_usage, status.outbox_depth, status.dead_letters) == (50.0, 0, 2)
    reason = "Stigg rejected it" if why == "refused" else "older than Stigg's 7-day dedup window"
    assert letters == [(1.0, "Stigg rejected it"), (1_000.0, reason)]
    assert fake.account.usage_of("acme", "api_calls") == 50.0  # Stigg counted the 10 alone
