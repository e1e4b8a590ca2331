"""Real gunicorn and uvicorn, four workers each, sharing one store and outbox (DESIGN §8).

The app module (:mod:`tests.web_app`) builds its client at import: with
``--preload`` that is the parent, before the fork, as users run it. Through
the servers' HTTP ports only, against the fake Stigg on loopback:

* 1,200 checks of 40 customers, each with a feature only it has: no answer
  from another customer's data, none from the fallback while Stigg is up;
* Stigg reads at most 1.1 per customer (one refresh per customer per host);
* 400 events through all workers: each reaches Stigg exactly once;
* offline, usage reported through one worker counts in every worker, and at
  the limit every worker denies.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from stigg_cache.testing.fake import FakeMode, FakeStigg, boolean
from tests.conftest import API_KEY
from tests.helpers import eventually
from tests.web_app import METERED_LIMIT, WARM

WORKERS = 4
CUSTOMERS = [f"web-{n}" for n in range(40)]
CHECKS = 1_200
EVENTS = 400
USAGE_RECORDS = 60
USAGE_CHECKS = 40
CLIENT_THREADS = 16
START_LIMIT_S = 60.0
REPO = Path(__file__).resolve().parent.parent
SERVERS: dict[str, tuple[str, list[str]]] = {
    "gunicorn --preload, threads": (
        "wsgi",
        ["gunicorn", "--preload", "-w", str(WORKERS), "--threads", "4", "tests.web_app:wsgi"],
    ),
    "gunicorn --preload, uvicorn workers": (
        "asgi",
        [
            "gunicorn",
            "--preload",
            "-w",
            str(WORKERS),
            "-k",
            "uvicorn_worker.UvicornWorker",
            "tests.web_app:asgi",
        ],
    ),
    "uvicorn --workers": ("asgi", ["uvicorn", "--workers", str(WORKERS), "tests.web_app:asgi"]),
}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _bind(command: list[str], port: int) -> list[str]:
    if command[0] == "gunicorn":
        return [*command, "-b", f"127.0.0.1:{port}", "--graceful-timeout", "5"]
    return [*command, "--host", "127.0.0.1", "--port", str(port), "--no-access-log"]


@pytest.fixture(params=sorted(SERVERS))
def server(request: Any, fake: FakeStigg, tmp_path: Path) -> Iterator[str]:
    """A server of four workers on a free loopback port; its base URL."""
    for customer in [WARM, *CUSTOMERS]:
        fake.set_customer(customer, [boolean(f"only-{customer}")])
    kind, command = SERVERS[request.param]
    port = _free_port()
    env = {
        **os.environ,
        "WEB_APP_KIND": kind,
        "WEB_APP_API_KEY": API_KEY,
        "WEB_APP_STIGG_URL": fake.url,
        "WEB_APP_STORE": f"sqlite:///{tmp_path}/cache.db",
    }
    log = (tmp_path / "server.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", *_bind(command, port)], cwd=REPO, env=env, stdout=log, stderr=log
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_LIMIT_S
        while not _answers(url):
            assert process.poll() is None, (tmp_path / "server.log").read_text()
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        log.close()


def _answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/check?customer={WARM}&feature=only-{WARM}").status_code == 200
    except httpx.HTTPError:
        return False


def _spread(url: str, requests: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """Send requests from many client threads (new connections: every worker gets some)."""

    host, port = url.removeprefix("http://").split(":")

    def send(request: tuple[str, str]) -> dict[str, Any]:
        method, path = request
        connection = http.client.HTTPConnection(host, int(port), timeout=30)
        try:
            connection.request(method, path)
            answer = connection.getresponse()
            assert answer.status == 200, answer.read()
            return dict(json.loads(answer.read()))
        finally:
            connection.close()

    with ThreadPoolExecutor(CLIENT_THREADS) as pool:
        return list(pool.map(send, requests))


def test_a_host_of_workers_answers_each_customer_from_its_own_data_and_counts_usage_once(
    server: str, fake: FakeStigg
) -> None:
    chosen = random.Random(7).choices(CUSTOMERS, k=CHECKS)
    checks = _spread(server, [("GET", f"/check?customer={c}&feature=only-{c}") for c in chosen])
    wrong = [a for a in checks if not a["has_access"] or a["source"] not in ("LIVE", "CACHE")]
    assert wrong == []
    assert len({a["pid"] for a in checks}) == WORKERS
    reads = Counter(
        path for _, method, path, status, _ in fake.log if path.endswith("/entitlements")
    )
    assert fake.entitlement_requests() <= 1.1 * (len(CUSTOMERS) + 1), {
        path: n for path, n in reads.items() if n > 1
    }

    keys = [f"web-event-{n}" for n in range(EVENTS)]
    _spread(server, [("POST", f"/event?customer={chosen[n]}&key={k}") for n, k in enumerate(keys)])

    def delivered() -> bool:
        _spread(server, [("POST", "/flush")] * WORKERS)
        return {e["idempotencyKey"] for b in fake.batches for e in b} >= set(keys)

    eventually(delivered, within_s=30)
    sends = Counter(e["idempotencyKey"] for b in fake.batches for e in b)
    assert {key: sends[key] for key in keys if sends[key] != 1} == {}


def test_offline_every_worker_counts_usage_reported_through_any_worker(
    server: str, fake: FakeStigg
) -> None:
    fake.set_mode(FakeMode.DOWN)  # no snapshot: the policy's usage_limit of 100 decides
    _spread(server, [("POST", "/usage?customer=offline&units=60")])
    _spread(server, [("POST", "/usage?customer=offline&units=40")])
    time.sleep(0.05)  # ten times the workers' lag in reading each other's usage (5 ms)
    seen: dict[int, list[bool]] = {}
    for _ in range(10):  # until every worker has answered
        asks = [("GET", "/metered?customer=offline&units=1&hold=0.1")] * CLIENT_THREADS
        for answer in _spread(server, asks):
            seen.setdefault(answer["pid"], []).append(answer["has_access"])
        if len(seen) == WORKERS:
            break
    assert len(seen) == WORKERS
    assert {pid: any(granted) for pid, granted in seen.items()} == dict.fromkeys(seen, False)
    assert METERED_LIMIT == 100.0


def test_offline_every_check_of_every_worker_counts_all_the_usage_reported(
    server: str, fake: FakeStigg
) -> None:
    """#28 item 2: awaited checks of uvicorn workers answered with the usage their own
    worker knew while they read their siblings' in the background (9 to 19 of 60)."""
    fake.set_mode(FakeMode.DOWN)  # no snapshot: the policy's answer, with the host's usage
    asks = [("GET", "/metered?customer=spread&units=1&hold=0.02")] * USAGE_CHECKS
    _spread(server, asks)  # the workers have read the customer's usage (none yet)
    _spread(server, [("POST", "/usage?customer=spread&units=1")] * USAGE_RECORDS)
    time.sleep(0.05)  # ten times the workers' lag in reading each other's usage (5 ms)
    answers = _spread(server, asks)
    used = Counter(answer["current_usage"] for answer in answers)
    assert used == {float(USAGE_RECORDS): USAGE_CHECKS}, used
    assert len({answer["pid"] for answer in answers}) > 1  # several workers answered
