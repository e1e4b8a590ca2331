"""A fleet soak: 3 hosts x 2 worker processes on one Redis, Redis restarted twice and one host
SIGKILLed (then started again, as its supervisor would) during 60 s of checks, consume() and
usage reports against the fake Stigg.

Invariants at the end: every record a worker was told is durable reached Stigg and was
counted exactly once; consume() never granted past the limit fleet-wide (what Stigg counted of
the consumed feature, in-flight consumptions of the killed host included); every host's
metered check counts every host's usage.

Redis keeps its data across restarts (append-only file, fsynced before it answers): the
outbox in Redis is only as durable as Redis is (README, "A fleet on Redis").
"""

from __future__ import annotations

import collections
import threading
import time
from pathlib import Path

import attrs

from stigg_cache.testing.fake import FakeStigg, metered

from conftest import API_KEY, OwnRedis, namespace_for
from fleet import Worker

RUN_S = 60.0
LIMIT = 2_000
HOSTS, WORKERS_PER_HOST = 3, 2
KILLED = 2  # the host SIGKILLed at 30 s, started again at 45 s


@attrs.define
class Driven:
    """What one worker process was asked, and told."""

    worker: Worker
    name: str
    granted: list[str] = attrs.field(factory=list)  # consumption keys granted
    attempted: list[str] = attrs.field(factory=list)  # every consumption key tried
    durable: list[str] = attrs.field(factory=list)  # event keys acknowledged durable
    sent: list[str] = attrs.field(factory=list)  # every event key reported
    checks: int = 0
    killed: bool = False


def _drive(driven: Driven, stop: threading.Event) -> None:
    """Consume one unit, report two events and check, over and over, until ``stop``."""
    n = 0
    while not stop.is_set():
        n += 1
        key = f"{driven.name}-c{n}"
        events = [f"{driven.name}-e{n}-{k}" for k in range(2)]
        try:
            driven.attempted.append(key)
            if driven.worker.ask("consume", customer="soak", feature="api_calls", key=key)[
                "granted"
            ]:
                driven.granted.append(key)
            driven.sent += events
            driven.worker.ask("events", customer="soak", keys=events)
            driven.durable += events
            driven.worker.ask("metered", customer="soak", feature="api_calls")
            driven.checks += 1
        except (AssertionError, BrokenPipeError, ValueError):
            if driven.killed:
                return  # SIGKILLed mid-call: what it acknowledged before still counts
            raise
        time.sleep(0.02)


def _host_url(server: OwnRedis, base: Path, host: int) -> str:
    return f"{server.url}?namespace={namespace_for(base)}&local_outbox={base}/host{host}.db"


def _drain(fleet: list[Driven], fake: FakeStigg, deadline_s: float) -> None:
    """Flush every live worker until all are drained (a check probes Stigg between tries)."""
    deadline = time.monotonic() + deadline_s
    live = [d for d in fleet if not d.killed]
    while time.monotonic() < deadline:
        if all(d.worker.ask("flush", timeout=2)["drained"] for d in live):
            return
        for driven in live:
            driven.worker.ask("check", customer="soak", feature="api_calls")
        time.sleep(0.2)
    raise AssertionError(f"not drained; {len(fake.account.events)} events counted")


class Soak:
    """The fleet, its driver threads and the fault schedule."""

    def __init__(self, server: OwnRedis, fake: FakeStigg, base: Path) -> None:
        self.server, self.fake, self.base = server, fake, base
        self.fleet: list[Driven] = []
        self.threads: list[threading.Thread] = []
        self.stop = threading.Event()
        self.started = time.monotonic()

    def start(self, host: int, n: int) -> None:
        url = _host_url(self.server, self.base, host)
        policy = self.base / "fallback.yaml"  # fresh for 1 s: checks follow Stigg's count
        policy.write_text("version: 1\nstaleness:\n  fresh_for: 1s\n  max_staleness: 1h\n")
        worker = Worker(url, self.fake.url, API_KEY, lease_s=4.0, policy=policy)
        driven = Driven(worker, f"h{host}w{n}")
        self.fleet.append(driven)
        thread = threading.Thread(target=_drive, args=(driven, self.stop), daemon=True)
        self.threads.append(thread)
        thread.start()

    def at(self, second: float) -> None:
        time.sleep(max(0.0, self.started + second - time.monotonic()))

    def run(self) -> None:
        """Redis restarted at 15 s and 40 s; host KILLED SIGKILLed at 30 s, back at 45 s."""
        for host in range(HOSTS):
            for n in range(WORKERS_PER_HOST):
                self.start(host, n)
        self.started = time.monotonic()
        for second, fault in ((15, self.restart_redis), (30, self.kill_host)):
            self.at(second)
            fault()
        self.at(40)
        self.restart_redis()
        self.at(45)
        self.start(KILLED, WORKERS_PER_HOST)  # its supervisor starts it again
        self.at(RUN_S)
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=60)

    def restart_redis(self) -> None:
        self.server.stop()
        self.server.start()

    def kill_host(self) -> None:
        for driven in self.fleet:
            if driven.name.startswith(f"h{KILLED}"):
                driven.killed = True
                driven.worker.kill()

    def close(self) -> None:
        self.stop.set()
        for driven in self.fleet:
            if not driven.killed:
                driven.worker.close()


def _seen_by_every_host(fleet: list[Driven], truth: float) -> list[float]:
    """What each live worker's metered check says, once all say ``truth`` (or after 30 s)."""
    deadline = time.monotonic() + 30
    while True:
        seen = [
            d.worker.ask("metered", customer="soak", feature="api_calls")["current_usage"]
            for d in fleet
            if not d.killed
        ]
        if seen == [truth] * len(seen) or time.monotonic() > deadline:
            return [float(value) for value in seen]
        time.sleep(0.5)


def test_a_fleet_keeps_every_record_and_every_limit_through_redis_restarts_and_a_killed_host(
    fake: FakeStigg, tmp_path: Path
) -> None:
    fake.set_customer("soak", [metered("api_calls", limit=LIMIT, usage=0)])
    server = OwnRedis(persist_in=tmp_path / "redis")
    server.start()
    soak = Soak(server, fake, tmp_path)
    try:
        soak.run()
        _drain(soak.fleet, fake, 120)
        truth = fake.account.usage_of("soak", "api_calls")
        seen = _seen_by_every_host(soak.fleet, truth)
    finally:
        soak.close()
        server.stop()
    events = collections.Counter(e["idempotencyKey"] for e in fake.account.events)
    usages = collections.Counter(u["idempotencyKey"] for u in fake.account.usages)
    durable = {key for d in soak.fleet for key in d.durable}
    granted = {key for d in soak.fleet for key in d.granted}
    assert durable <= set(events), f"{len(durable - set(events))} durable events never counted"
    assert set(events) <= {key for d in soak.fleet for key in d.sent}
    assert granted <= set(usages), f"{len(granted - set(usages))} consumptions never counted"
    assert set(usages) <= {key for d in soak.fleet for key in d.attempted}
    assert max(events.values()) == 1
    assert max(usages.values()) == 1
    assert truth == len(usages) <= LIMIT  # never past the limit, the killed host's included
    assert seen == [truth] * len(seen), seen  # every host counts every host's usage
    print(
        f"soak: {len(granted)} granted of {sum(len(d.attempted) for d in soak.fleet)} tried, "
        f"{len(durable)} events, {sum(d.checks for d in soak.fleet)} checks; 429s: "
        f"{fake.account.rate_limited}"
    )
