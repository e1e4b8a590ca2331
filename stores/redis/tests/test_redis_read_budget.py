"""Reads are paced to one budget for the fleet: Stigg's Edge allows 6,000 a minute per key."""

from __future__ import annotations

from pathlib import Path

from stigg_cache import FallbackPolicy, ResilientClient, Source, Staleness
from stigg_cache.testing.fake import FakeStigg, boolean
from tests.forking import in_child

from conftest import API_KEY, url_for

POLICY = FallbackPolicy(staleness=Staleness(fresh_for_s=60, max_staleness_s=3600))


def test_every_process_on_one_redis_reads_from_one_budget(fake: FakeStigg, tmp_path: Path) -> None:
    for customer in ("first", "second", "third"):
        fake.set_customer(customer, [boolean("sso")])
    client = ResilientClient(
        None,
        api_key=API_KEY,
        base_url=fake.url,
        store=url_for(tmp_path),
        policy=POLICY,
        reads_per_minute=1,  # a read a minute, a burst of one: a slow machine refills none
        check_timeout=2.0,
    )

    def source(customer: str) -> tuple[str, str | None]:
        answer = client.get_boolean_entitlement(customer_id=customer, feature_id="sso")
        return answer.decision.source.value, answer.decision.reason

    assert source("first")[0] == Source.LIVE.value  # the fleet's one read for now
    child_source, child_reason = in_child(lambda: source("second"))
    assert child_source == Source.DEFAULT.value  # another process: the same budget, spent
    assert "read budget" in (child_reason or "")
    assert fake.entitlement_requests() == 1
    assert client.status().breaker == "closed"
    client.close()
