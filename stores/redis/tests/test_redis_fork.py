"""A client on Redis built before ``os.fork`` works in the child (DESIGN §8).

redis-py gives a child new connections of its own; the local fallback outbox
and our connection gate renew theirs with the client.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stigg_cache import FallbackPolicy, ResilientClient, Source, Staleness
from stigg_cache.testing import runtime_of
from stigg_cache.testing.fake import FakeStigg, boolean
from tests.forking import child_result, fork_child
from tests.helpers import eventually

from conftest import url_for

API_KEY = "sk-test-redis-fork"
POLICY = FallbackPolicy(staleness=Staleness(fresh_for_s=60, max_staleness_s=3600))


def test_a_client_on_redis_built_before_a_fork_works_in_the_child(tmp_path: Path) -> None:
    with FakeStigg(api_key=API_KEY) as fake:
        for customer in ("warm", "parent", "child"):
            fake.set_customer(customer, [boolean(f"only-{customer}")])
        url = url_for(tmp_path)
        client = ResilientClient(
            None, api_key=API_KEY, base_url=fake.url, store=url, policy=POLICY, check_timeout=2.0
        )

        def own(customer: str) -> tuple[bool, Source]:
            answer = client.get_boolean_entitlement(
                customer_id=customer, feature_id=f"only-{customer}"
            )
            return answer.has_access, answer.decision.source

        assert own("warm") == (True, Source.LIVE)  # the Redis pool and the HTTP pool are in use

        def child() -> dict[str, Any]:
            runtime_of(client).parts.cache.clear_l1()  # read the parent's snapshot back from Redis
            warm = own("warm")
            fresh = own("child")
            event = {"customer_id": "child", "event_name": "e", "idempotency_key": "from-child"}
            client.report_event([event])
            drained = client.flush(timeout=10).drained
            client.close()
            return {
                "warm": [warm[0], warm[1].value],
                "fresh": [fresh[0], fresh[1].value],
                "drained": drained,
            }

        pid = fork_child(child)
        assert own("parent") == (True, Source.LIVE)
        result = child_result(pid)
        assert result == {"warm": [True, "CACHE"], "fresh": [True, "LIVE"], "drained": True}
        eventually(
            lambda: any(e["idempotencyKey"] == "from-child" for b in fake.batches for e in b)
        )
        client.close()
