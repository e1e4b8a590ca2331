"""The Redis store and outbox pass the shipped conformance suites against the real server."""

from __future__ import annotations

import time
from pathlib import Path

from stigg_cache.outbox.base import Claimed, Outbox
from stigg_cache.outbox.records import RecordKind, usage_record
from stigg_cache.testing import runtime_of
from stigg_cache.testing.conformance import DurableStoreConformance
from stigg_cache.testing.outbox_conformance import (
    LEASE_S,
    NOW,
    SharedOutboxConformance,
    events,
    units,
)
from stigg_cache_redis import open_redis_outbox

from conftest import url_for


class TestRedisStore(DurableStoreConformance):
    def store_url(self, base: Path) -> str:
        return url_for(base)


class TestRedisOutbox(SharedOutboxConformance):
    def outbox_url(self, base: Path) -> str:
        return url_for(base)

    def make_outbox(self, base: Path) -> Outbox:
        return open_redis_outbox(url_for(base))

    # Leases and retry times are on Redis's clock (hosts' clocks differ): the claims'
    # "now" moves none of them, time passing on Redis does. Three tests in that form:

    def test_a_leased_record_is_not_claimed_again_until_its_lease_ends(
        self, outbox: Outbox
    ) -> None:
        outbox.enqueue(events(2), NOW)
        first = outbox.claim(RecordKind.EVENT, 10, "a", now=NOW, lease_s=1.0)
        assert len(first) == 2
        ahead = NOW + LEASE_S + 1  # a claimer whose clock is past the lease's end
        assert outbox.claim(RecordKind.EVENT, 10, "b", now=ahead, lease_s=LEASE_S) == []
        again = _claimed_within(outbox, "b", now=NOW)
        assert [c.id for c in again] == [c.id for c in first]

    def test_retry_waits_until_its_time_and_counts_the_attempt(self, outbox: Outbox) -> None:
        outbox.enqueue(events(1), NOW)
        (claimed,) = outbox.claim(RecordKind.EVENT, 1, "a", now=NOW, lease_s=LEASE_S)
        outbox.settle(retry=[claimed.id], owner="a", now=NOW, retry_at=NOW + 1, reason="503")
        assert outbox.claim(RecordKind.EVENT, 1, "a", now=NOW + 5, lease_s=LEASE_S) == []
        (again,) = _claimed_within(outbox, "a", now=NOW)
        assert again.attempts == 1

    def test_a_wall_clock_stepped_back_strands_no_record(self, outbox: Outbox) -> None:
        # Leased and retried while the host's clock read an hour ahead: on Redis's clock
        # the lease and the retry last what they were given, no more (and no less).
        outbox.enqueue(events(2), NOW)
        ahead = NOW + 3600
        (retried,) = outbox.claim(RecordKind.EVENT, 1, "a", now=ahead, lease_s=LEASE_S)
        outbox.settle(retry=[retried.id], owner="a", now=ahead, retry_at=ahead + 1, reason="503")
        assert len(outbox.claim(RecordKind.EVENT, 1, "a", now=ahead, lease_s=1.0)) == 1
        assert outbox.stats(NOW + 1).leased == 1
        again = _claimed_within(outbox, "b", now=NOW + 1, count=2)
        assert sorted(c.record.idempotency_key for c in again) == ["e0", "e1"]
        assert outbox.stats(NOW - 3600).leased == 2  # leased to b, whatever the caller's clock


def _claimed_within(outbox: Outbox, owner: str, *, now: float, count: int = 1) -> list[Claimed]:
    """What ``owner`` claims once Redis's clock has passed the leases and retry times."""
    claimed: list[Claimed] = []
    deadline = time.monotonic() + 30
    while len(claimed) < count and time.monotonic() < deadline:
        claimed += outbox.claim(RecordKind.EVENT, 10, owner, now=now, lease_s=LEASE_S)
        time.sleep(0.05)
    return claimed


def test_records_an_older_version_wrote_are_indexed_by_customer_once(tmp_path: Path) -> None:
    """Written before the index by customer existed: found there after the first read."""
    box = open_redis_outbox(url_for(tmp_path))
    try:
        box.enqueue([*units(1200), *events(3)], NOW)  # more than one batch of the index
        index, schema = box._key_of["customers"], box._key_of["schema"]
        box._redis.delete(index, schema)  # as an older version left it
        box.counted_events = frozenset({"api.request"})  # a meter reads these events
        assert box.held_of("c0", None) != []
        assert len(box.held_of("c0", None)) == 1201  # the units, and event e0
        assert box._redis.zcard(index) == 1203
        assert box._redis.get(schema) == b"2"
    finally:
        box.close()


def test_snapshots_on_redis_expire_after_the_policys_longest_max_staleness(
    tmp_path: Path,
) -> None:
    from stigg_cache import FallbackPolicy, ResilientClient, Staleness
    from stigg_cache.testing.fake import FakeStigg, boolean

    policy = FallbackPolicy(staleness=Staleness(fresh_for_s=60, max_staleness_s=7200))
    with FakeStigg(api_key="sk-ttl") as fake:
        fake.set_customer("acme", [boolean("sso")])
        client = ResilientClient(
            None, api_key="sk-ttl", base_url=fake.url, store=url_for(tmp_path), policy=policy
        )
        client.get_boolean_entitlement(customer_id="acme", feature_id="sso")
        store = runtime_of(client).parts.cache.store
        (key,) = list(store._redis.scan_iter(f"{store._prefix}*"))  # type: ignore[attr-defined]
        assert 7100 < store._redis.ttl(key) <= 7200  # type: ignore[attr-defined]
        client.close()


def test_keys_an_older_version_stored_are_scoped_to_their_customer_once(tmp_path: Path) -> None:
    """Written before keys were scoped: a retry is still a duplicate, and another customer
    may use the key."""
    box = open_redis_outbox(url_for(tmp_path))
    try:
        (record,) = units(1)  # c0's u0
        box.enqueue([record], NOW)
        ident, idx, scoped = (box._key_of[name] for name in ("ident", "idx", "scoped"))
        id_ = box._redis.hget(idx, "usage\nc0\nu0")
        assert id_ is not None
        box._redis.hdel(idx, "usage\nc0\nu0")  # as an older version stored it
        box._redis.hset(idx, "usage\nu0", id_)
        box._redis.hset(ident, id_, "usage\nu0")
        box._redis.delete(scoped)
    finally:
        box.close()
    box = open_redis_outbox(url_for(tmp_path))  # a worker of this version
    try:
        assert box.enqueue([record], NOW)[0].duplicate
        other = usage_record(
            {"customer_id": "c9", "feature_id": "api_calls", "value": 1, "idempotency_key": "u0"},
            NOW,
        )
        assert not box.enqueue([other], NOW)[0].duplicate
        assert box._redis.hget(ident, id_) == b"usage\nc0\nu0"
        assert box._redis.get(scoped) == b"1"
    finally:
        box.close()
