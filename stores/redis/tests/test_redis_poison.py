"""On Redis too: one record that does not decode stops neither the fleet's usage nor a start."""

from __future__ import annotations

from pathlib import Path

import redis

from stigg_cache import ResilientClient
from stigg_cache.testing import runtime_of
from stigg_cache.testing.fake import FakeMode, FakeStigg
from stigg_cache_redis.outbox import RedisOutbox

from conftest import API_KEY, REDIS_URL, url_for


def _client(fake: FakeStigg, tmp_path: Path) -> ResilientClient:
    return ResilientClient(None, api_key=API_KEY, base_url=fake.url, store=url_for(tmp_path))


def _plant(outbox: RedisOutbox, id_: int, raw: bytes, payload: bytes, key: str) -> None:
    db = redis.Redis.from_url(REDIS_URL)
    identity = f"event\n{key}"
    db.hset(outbox._key("idx"), identity, id_)
    db.hset(outbox._key("ident"), id_, identity)
    db.hset(outbox._key("rec"), id_, raw)
    db.hset(outbox._key("pay"), id_, payload)
    db.zadd(outbox._key("pending"), {str(id_): 1.0})
    db.zadd(outbox._key("event:ready"), {str(id_): id_})
    db.close()


def _events(client: ResilientClient, prefix: str) -> None:
    client.report_event(
        [
            {"customer_id": "acme", "event_name": "login", "idempotency_key": f"{prefix}{n}"}
            for n in range(3)
        ]
    )


def test_poisoned_records_in_redis_are_dead_lettered_and_the_rest_delivered(
    fake: FakeStigg, tmp_path: Path
) -> None:
    first = _client(fake, tmp_path)
    fake.set_mode(FakeMode.DOWN)
    _events(first, "before")
    outbox = runtime_of(first).parts.usage.outbox
    assert isinstance(outbox, RedisOutbox)
    _plant(outbox, 900_001, b"event\nnot-a-time", b"{}", "bad-stamp")
    _plant(outbox, 900_002, b"event\n1.0", b"\xff\xfe not utf-8", "bad-bytes")
    first.close()
    fake.set_mode(FakeMode.UP)
    client = _client(fake, tmp_path)  # another host starting: must not raise
    _events(client, "after")
    assert client.flush(timeout=10).drained
    assert len(fake.account.events) == 6
    assert client.status().dead_letters == 2
    reasons = {d.reason.split(":")[0] for d in client.outbox.dead_letters()}
    assert reasons == {"unreadable in the outbox"}
    client.close()


def test_a_record_whose_identity_entry_is_lost_is_still_sent_once_or_dead_lettered(
    fake: FakeStigg, tmp_path: Path
) -> None:
    """Dead-lettering (and acknowledging) asks nothing of a record but its being pending: a
    record whose ``ident`` entry was lost (evicted, damaged) stayed pending for ever, sent
    again once per lease, counted as usage and never dead-lettered."""
    client = ResilientClient(
        None, api_key=API_KEY, base_url=fake.url, store=url_for(tmp_path), outbox_lease_s=1.0
    )
    fake.set_mode(FakeMode.DOWN)
    for customer, key in (("acme", "accepted"), ("refused", "refused")):
        client.report_usage(customer_id=customer, feature_id="api_calls", value=1,
                            idempotency_key=key)  # fmt: skip
    outbox = runtime_of(client).parts.usage.outbox
    assert isinstance(outbox, RedisOutbox)
    db = redis.Redis.from_url(REDIS_URL)
    db.delete(outbox._key("ident"))  # that part of every record, lost
    db.close()
    fake.account.rejected_customers.add("refused")
    fake.set_mode(FakeMode.UP)
    client.flush(timeout=5)
    status = client.status()
    letters = [d.record.idempotency_key for d in client.outbox.dead_letters()]
    client.close()
    assert (status.outbox_depth, letters, fake.account.receipts["accepted"]) == (
        0,
        ["refused"],
        1,
    )
