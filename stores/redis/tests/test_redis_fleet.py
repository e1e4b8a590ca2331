"""A fleet sharing one Redis: snapshots, usage, pacing and crashed senders."""

from __future__ import annotations

import collections
import time
from pathlib import Path

import redis

from stigg_cache.outbox.records import event_record
from stigg_cache.testing.fake import FakeMode, FakeStigg
from stigg_cache_redis import open_redis_outbox

from conftest import API_KEY, namespace_for, url_for
from fleet import Worker

BUDGET_S = 0.3
MARGIN_S = 0.25


def _counted(fake: FakeStigg) -> collections.Counter[str]:
    return collections.Counter(event["idempotencyKey"] for event in fake.account.events)


def test_a_process_that_never_reached_stigg_answers_from_what_another_fetched(
    fake: FakeStigg, tmp_path: Path
) -> None:
    policy = tmp_path / "fallback.yaml"
    policy.write_text("version: 1\nstaleness:\n  fresh_for: 0.5s\n  max_staleness: 1h\n")
    store = url_for(tmp_path)
    a = Worker(store, fake.url, API_KEY, policy=policy)
    try:
        assert a.ask("check", customer="acme", feature="sso")["source"] == "LIVE"
        fake.set_mode(FakeMode.BLACKHOLE)
        time.sleep(0.6)  # past fresh_for: the snapshot is now stale
        b = Worker(store, fake.url, API_KEY, policy=policy)
        try:
            answer = b.ask("check", customer="acme", feature="sso")
            assert answer["has_access"] is True
            assert (answer["source"], answer["stale"]) == ("STALE", True), answer
            assert answer["elapsed_s"] < BUDGET_S + MARGIN_S
            # Both report usage while Stigg is unreachable; it is durable in Redis.
            a.ask("events", customer="acme", keys=[f"a-{n}" for n in range(150)])
            b.ask("events", customer="acme", keys=[f"b-{n}" for n in range(150)])
            assert b.ask("status")["outbox_depth"] == 300  # one outbox, shared
            fake.set_mode(FakeMode.UP)
            deadline = time.monotonic() + 60
            while (
                not a.ask("flush", timeout=5)["drained"] or not b.ask("flush", timeout=5)["drained"]
            ) and (time.monotonic() < deadline):
                time.sleep(0.1)
        finally:
            b.close()
    finally:
        a.close()
    counted = _counted(fake)
    assert set(counted) == {f"a-{n}" for n in range(150)} | {f"b-{n}" for n in range(150)}
    assert max(counted.values()) == 1
    assert max(fake.account.receipts.values()) == 1  # not even re-sent: no double-sending


def test_four_processes_drain_one_backlog_at_the_accounts_rate(
    fake: FakeStigg, tmp_path: Path
) -> None:
    events, rate = 8_000, 1_000.0  # the fake's limit, as Stigg's: 1,000 events/s
    store = url_for(tmp_path)
    workers = [Worker(store, fake.url, API_KEY) for _ in range(4)]
    try:
        box = open_redis_outbox(store)
        box.enqueue(
            [
                event_record(
                    {
                        "customer_id": f"c{n % 50}",
                        "event_name": "api.request",
                        "idempotency_key": f"k{n}",
                    },
                    time.time(),
                )
                for n in range(events)
            ],
            time.time(),
        )
        box.close()
        first = last = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            arrived = len(fake.account.events)
            now = time.monotonic()
            if arrived and first is None:
                first = now
            if arrived >= events:
                last = now
                break
            time.sleep(0.005)
        # A worker counts a batch as sent once Redis took its settle, a moment after Stigg
        # took the batch: wait for those counts (each record by one process, none twice).
        settled = time.monotonic() + 10
        while sum(sent := [w.ask("status")["sent"] for w in workers]) < events:
            if time.monotonic() > settled:
                break
            time.sleep(0.01)
    finally:
        for worker in workers:
            worker.close()
    assert first is not None
    assert last is not None, f"{len(fake.account.events)} of {events} arrived in 60 s"
    ideal = events / rate  # as in benchmark row 10
    took = last - first
    print(
        f"drained {events} events in {took:.2f} s (ideal {ideal:.2f} s, {took / ideal:.3f}x); "
        f"per process {sent}; 429s: {fake.account.rate_limited}"
    )
    assert abs(took / ideal - 1) <= 0.10
    assert fake.account.rate_limited <= 3
    assert sum(sent) == events
    assert sum(1 for count in sent if count) >= 2  # the fleet shared the work
    assert max(_counted(fake).values()) == 1


def test_a_batch_claimed_by_a_killed_sender_is_delivered_once_by_another(
    fake: FakeStigg, tmp_path: Path
) -> None:
    store = url_for(tmp_path)
    leased = f"{{stigg-cache:{namespace_for(tmp_path)}}}:outbox:event:leased"
    server = redis.Redis.from_url(url_for(tmp_path).partition("?")[0])
    fake.set_mode(FakeMode.SLOW, delay_s=3.0)  # Stigg takes the batch, then answers late
    a = Worker(store, fake.url, API_KEY, lease_s=4.0)
    a.ask("events", customer="acme", keys=[f"k{n}" for n in range(40)])
    deadline = time.monotonic() + 10
    while server.zcard(leased) < 40 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.zcard(leased) == 40, "the sender never claimed the batch"
    a.kill()  # between send and acknowledgement, holding the lease
    fake.set_mode(FakeMode.UP)
    b = Worker(store, fake.url, API_KEY, lease_s=4.0)
    try:
        deadline = time.monotonic() + 30
        # drained, not "pending == 0": a flush that could not read Redis counts only its own part
        while not b.ask("flush", timeout=2)["drained"] and time.monotonic() < deadline:
            time.sleep(0.1)
        assert b.ask("status")["sent"] == 40  # B delivered what A had claimed
    finally:
        b.close()
        server.close()
    counted = _counted(fake)
    assert set(counted) == {f"k{n}" for n in range(40)}
    assert max(counted.values()) == 1  # A's request, if it landed, and B's: counted once
