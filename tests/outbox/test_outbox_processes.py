"""The outbox across processes: SIGKILL at random points, and two senders sharing one file."""

from __future__ import annotations

import collections
import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from stigg_cache import ResilientClient
from stigg_cache.testing.fake import FakeMode, FakeStigg
from tests.conftest import API_KEY

ROOT = Path(__file__).parents[2]
KILLS = 50


def _spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.outbox_worker", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


@contextlib.contextmanager
def _reaped(child: subprocess.Popen[str]) -> Iterator[None]:
    """A child still running when the block ends (a failed assertion) is killed, so its
    pipe is closed and it is reaped here: no later test meets what this one left."""
    try:
        yield
    finally:
        if child.poll() is None:
            child.kill()


def _acknowledged_until_killed(
    store: str, fake: FakeStigg, run: str, rng: random.Random
) -> list[str]:
    with _spawn("write", store, fake.url, API_KEY, run) as child, _reaped(child):
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.0, 0.12))
        os.kill(child.pid, signal.SIGKILL)
        output, _ = child.communicate(timeout=30)
    assert child.returncode == -signal.SIGKILL
    # A line cut short by the kill was never fully acknowledged to anyone.
    return [line for line in output.split("\n")[:-1] if line]


def test_every_acknowledged_event_arrives_exactly_once_across_sigkills(
    fake: FakeStigg, tmp_path: Path
) -> None:
    store = f"sqlite:///{tmp_path}/cache.db"
    rng = random.Random(20261124)
    acknowledged: list[str] = []
    for run in range(KILLS):
        if run % 10 == 5:  # some kills land while Stigg is down, some while it is sending
            fake.set_mode(FakeMode.DOWN)
        elif run % 10 == 8:
            fake.set_mode(FakeMode.UP)
        acknowledged += _acknowledged_until_killed(store, fake, f"r{run}", rng)
    fake.set_mode(FakeMode.UP)
    with ResilientClient(
        None, api_key=API_KEY, base_url=fake.url, store=store, outbox_lease_s=1.0
    ) as client:
        deadline = time.monotonic() + 60
        while client.flush(timeout=5).pending and time.monotonic() < deadline:
            time.sleep(0.2)  # leases of killed senders run out
        assert client.status().outbox_depth == 0
    counted = collections.Counter(event["idempotencyKey"] for event in fake.account.events)
    assert len(acknowledged) > KILLS  # the kills really interrupted work in progress
    missing = [key for key in acknowledged if key not in counted]
    assert not missing, f"{len(missing)} acknowledged events never reached Stigg"
    assert max(counted.values()) == 1, "an event was counted twice"
    resent = sum(1 for n in fake.account.receipts.values() if n > 1)
    print(
        f"{len(acknowledged)} acknowledged, {len(counted)} counted, {resent} re-sent after a kill"
    )


def test_two_processes_share_one_outbox_without_double_sending(
    fake: FakeStigg, tmp_path: Path
) -> None:
    store = f"sqlite:///{tmp_path}/cache.db"
    fake.set_mode(FakeMode.DOWN)
    with ResilientClient(None, api_key=API_KEY, base_url=fake.url, store=store) as client:
        client.report_event(
            [
                {"customer_id": "acme", "event_name": "api.request", "idempotency_key": f"k{n}"}
                for n in range(3_000)
            ]
        )
    fake.set_mode(FakeMode.UP)
    with contextlib.ExitStack() as stack:
        senders = [stack.enter_context(_spawn("drain", store, fake.url, API_KEY)) for _ in range(2)]
        for sender in senders:
            stack.enter_context(_reaped(sender))
        outputs = [sender.communicate(timeout=120)[0] for sender in senders]
    assert all("drained=True" in output for output in outputs), outputs
    assert len(fake.account.events) == 3_000
    assert max(fake.account.receipts.values()) == 1  # no key was ever sent twice
