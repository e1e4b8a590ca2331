"""Workers forked from one client, through an outage (a scenario with ``workers:``).

As ``gunicorn --preload`` runs a service: the parent builds the client on the
default store (SQLite in the user's cache folder, here the run's own folder)
and forks ``count`` workers, which check and report usage on threads (a
:class:`~stigg_cache.ResilientClient`) or on an event loop (an
:class:`~stigg_cache.AsyncResilientClient`); one run of each. The scenario's
steps play on the parent's fake Stigg and fault proxy meanwhile. Each worker
lives by the clock the steps are timed on::

    workers: {count: 4, report_between: [2.5, 6], count_at: 6.5}

It reports usage (events a meter counts) between the two times, reads every
usage customer's count at ``count_at`` (Stigg out of reach, every worker done
reporting), and once the timeline is over waits for its breaker to close. The
invariants: after Stigg returns every worker's breaker closes and no worker
answers from the fallback for a customer Stigg knows; usage reported through
any worker is counted by every worker's checks; every record reaches Stigg once.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import random
import signal
import threading
import time
import traceback
from collections.abc import Awaitable, Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import attrs

from stigg_cache.aio import AsyncResilientClient
from stigg_cache.chaos.history import History, Outcome, Verdict, usage_verdicts
from stigg_cache.client import ResilientClient
from stigg_cache.models import ConnectionState
from stigg_cache.outbox.records import event_record
from stigg_cache.policy.model import FallbackPolicy
from stigg_cache.testing.fake import FakeStigg, boolean, metered
from stigg_cache.testing.proxy import FaultProxy

LANES = 3  # threads (or tasks) checking in each worker
CHECK_EVERY_S = 0.02
REPORT_EVERY_S = 0.05
RECOVERY_S = 60.0  # after the timeline: the breaker's backoff may be up to 30 s
WORKER_LIMIT_S = 120.0  # past the timeline, a worker that hangs is killed (SIGALRM)
KNOWN = [f"known-{n}" for n in range(6)]  # checked from the start
LATE = [f"late-{n}" for n in range(6)]  # known to Stigg, first checked after it returns
USAGE = [f"usage-{n}" for n in range(3)]  # known to Stigg, checked only offline before
SOURCES_FROM_STIGG = ("LIVE", "CACHE", "STALE")
POLICY = """version: 1
staleness: {fresh_for: 2s, max_staleness: 1h}
features:
  sso: {fallback: {has_access: false}}
  api_calls: {fallback: {has_access: true, usage_limit: 1000000}}
default: {has_access: true}
meters:
  api_calls: {event: api.request, aggregate: count}
"""


@attrs.frozen
class Workers:
    """The ``workers:`` key of a scenario."""

    count: int = 4
    report_between: tuple[float, float] = (2.5, 6.0)
    count_at: float = 6.5

    @classmethod
    def from_raw(cls, raw: Mapping[str, Any]) -> Workers:
        """From the scenario's YAML mapping."""
        start, end = raw.get("report_between", (2.5, 6.0))
        return cls(int(raw.get("count", 4)), (float(start), float(end)), float(raw["count_at"]))


def run_workers(
    plan: Workers,
    duration_s: float,
    play: Callable[[FakeStigg, FaultProxy, float], None],
    workdir: Path,
    api_key: str,
) -> tuple[tuple[Verdict, ...], int, int]:
    """Both runs (threads, then an event loop): their verdicts, named by the run, and the
    checks and usage reports the workers made."""
    verdicts, checks, reports = [], 0, 0
    for asynchronous in (False, True):
        name = "event loop" if asynchronous else "threads"
        folder = workdir / name.replace(" ", "-")
        folder.mkdir(parents=True, exist_ok=True)
        results, judged = _one_run(
            plan, duration_s, play, folder, api_key, asynchronous=asynchronous
        )
        verdicts += [attrs.evolve(v, name=f"{name}: {v.name}") for v in judged]
        checks += sum(sum(r.get("sources", {}).values()) for r in results)
        reports += sum(len(r.get("reported", ())) for r in results)
    return tuple(verdicts), checks, reports


def _one_run(
    plan: Workers,
    duration_s: float,
    play: Callable[[FakeStigg, FaultProxy, float], None],
    folder: Path,
    api_key: str,
    *,
    asynchronous: bool,
) -> tuple[list[dict[str, Any]], list[Verdict]]:
    with (
        FakeStigg(api_key=api_key) as fake,
        FaultProxy.to(fake.url) as proxy,
        _user_cache(folder),
    ):
        for customer in [*KNOWN, *LATE, *USAGE]:
            fake.set_customer(customer, [boolean("sso"), metered("api_calls", limit=1e9, usage=0)])
        make: Any = AsyncResilientClient if asynchronous else ResilientClient
        client = make(
            None,
            api_key=api_key,
            base_url=proxy.url,
            policy=FallbackPolicy.from_yaml(POLICY),
            check_timeout=0.3,
        )  # the default store and outbox: under the run's folder, as the user's
        ask = _Calls(client)
        for customer in KNOWN:  # the parent's warm-up, before the fork
            _run(ask("get_boolean_entitlement", customer_id=customer, feature_id="sso"))
        started = time.monotonic()
        pids = [_fork(index, plan, ask, started, duration_s) for index in range(plan.count)]
        play(fake, proxy, started)
        results = [_result(pid) for pid in pids]
        _run(ask("flush", timeout=5.0))
        verdicts = _judged(results, fake)
        ask.close()
    return results, verdicts


@contextlib.contextmanager
def _user_cache(folder: Path) -> Iterator[None]:
    """The user's cache folder (the default store's) is ``folder`` meanwhile."""
    before = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(folder)
    try:
        yield
    finally:
        if before is None:
            del os.environ["XDG_CACHE_HOME"]
        else:
            os.environ["XDG_CACHE_HOME"] = before


def _run(call: Awaitable[Any]) -> Any:
    async def awaited() -> Any:
        return await call

    return asyncio.run(awaited())


class _Calls:
    """Client calls by name, awaited: the async client's coroutines, or the sync client's
    calls in place."""

    def __init__(self, client: ResilientClient | AsyncResilientClient) -> None:
        self.client = client
        self.asynchronous = isinstance(client, AsyncResilientClient)

    async def __call__(self, method: str, **arguments: Any) -> Any:
        answer = getattr(self.client, method)(**arguments)
        return await answer if self.asynchronous else answer

    def status(self) -> Any:
        """The client's ``status()``."""
        return self.client.status()

    def close(self) -> None:
        """Close the client (the async one on a loop of its own)."""
        if isinstance(self.client, AsyncResilientClient):
            _run(self.client.aclose())
        else:
            self.client.close()


def _fork(index: int, plan: Workers, ask: _Calls, started: float, duration_s: float) -> int:
    """A worker: its life (:class:`_Worker`) in a child; the pid and the pipe it answers on."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the worker: never returns into the caller
        os.close(read_end)
        signal.alarm(int(duration_s + WORKER_LIMIT_S))
        try:
            try:
                text = json.dumps(_Worker(index, plan, ask, started, duration_s).live())
            except BaseException:  # everything goes back to the parent
                text = json.dumps({"error": traceback.format_exc()})
            with os.fdopen(write_end, "w") as pipe:
                pipe.write(text)
        finally:
            os._exit(0)
    os.close(write_end)
    _pipes[pid] = read_end
    return pid


_pipes: dict[int, int] = {}


def _result(pid: int) -> dict[str, Any]:
    with os.fdopen(_pipes.pop(pid)) as pipe:
        text = pipe.read()
    os.waitpid(pid, 0)
    if not text:
        return {"error": f"worker {pid} died without a word"}
    return dict(json.loads(text))


class _Worker:
    """One forked worker's life on the scenario's clock."""

    def __init__(
        self, index: int, plan: Workers, ask: _Calls, started: float, duration_s: float
    ) -> None:
        self.index, self.plan, self.ask = index, plan, ask
        self.started, self.duration_s = started, duration_s
        self.reported: list[tuple[str, str]] = []  # (idempotency key, payload) acknowledged
        self.sources: dict[str, int] = {}

    def live(self) -> dict[str, Any]:
        """Check and report until the timeline ends, then recover; what it saw."""
        if self.ask.asynchronous:  # the lanes are tasks on one event loop
            threads = [threading.Thread(target=_run, args=(self._lanes(),))]
        else:  # a thread each
            threads = [threading.Thread(target=_run, args=(self._lane(n),)) for n in range(LANES)]
        threads.append(threading.Thread(target=self._reporter))
        for thread in threads:
            thread.start()
        self._sleep_until(self.plan.count_at)
        counted = {c: self._used(c) for c in USAGE}  # nobody reports now; Stigg out of reach
        for thread in threads:
            thread.join()
        return {
            "reported": self.reported,
            "counted": counted,
            "sources": self.sources,
            **self._recovered(),
        }

    def _at(self) -> float:
        return time.monotonic() - self.started

    def _sleep_until(self, at: float) -> None:
        time.sleep(max(0.0, at - self._at()))

    async def _lanes(self) -> None:
        await asyncio.gather(*(self._lane(n) for n in range(LANES)))

    async def _lane(self, lane: int) -> None:
        rng = random.Random(self.index * 100 + lane)  # noqa: S311 - load, not secrets
        while self._at() < self.duration_s:
            answer = await self.ask(
                "get_boolean_entitlement", customer_id=rng.choice(KNOWN), feature_id="sso"
            )
            source = answer.decision.source.value
            self.sources[source] = self.sources.get(source, 0) + 1
            await asyncio.sleep(CHECK_EVERY_S)

    def _reporter(self) -> None:
        start, end = self.plan.report_between
        self._sleep_until(start)
        for n in itertools.count():
            if self._at() >= end:
                return
            key = f"chaos-worker-{self.index}-{n}"
            event: dict[str, Any] = {
                "customer_id": USAGE[n % len(USAGE)],
                "event_name": "api.request",
                "idempotency_key": key,
                "timestamp": datetime.now(UTC),
            }
            with contextlib.suppress(Exception):  # a refusal is loud, never counted here
                _run(self.ask("report_event", events=[event]))
                self.reported.append((key, event_record(event, 0).payload))
            time.sleep(REPORT_EVERY_S)

    def _used(self, customer: str) -> float:
        answer = _run(
            self.ask("get_metered_entitlement", customer_id=customer, feature_id="api_calls")
        )
        return float(answer.current_usage or 0.0)

    def _recovered(self) -> dict[str, Any]:
        """Once its breaker closed: every customer Stigg knows, each answered from Stigg."""
        deadline = time.monotonic() + RECOVERY_S
        state = self.ask.status().state
        while state is not ConnectionState.CONNECTED and time.monotonic() < deadline:
            _run(self.ask("get_boolean_entitlement", customer_id=KNOWN[0], feature_id="sso"))
            time.sleep(0.1)
            state = self.ask.status().state
        late = {}
        for customer in [*LATE, *KNOWN, *USAGE]:
            asked = self.ask("get_boolean_entitlement", customer_id=customer, feature_id="sso")
            late[customer] = _run(asked).decision.source.value
        drained = False
        while not drained and time.monotonic() < deadline:
            drained = _run(self.ask("flush", timeout=2.0)).drained
        return {"state": state.value, "after": late, "drained": drained}


def _judged(results: list[dict[str, Any]], fake: FakeStigg) -> list[Verdict]:
    failed = [r["error"] for r in results if "error" in r]
    if failed:
        return [Verdict("every worker lived its life", passed=False, figures=failed[0][-600:])]
    history = History()
    for result in results:
        for key, payload in result["reported"]:
            operation = history.invoke("report", 0.0, records={key: payload})
            history.end(operation, Outcome.OK, 0.0)
    return [
        _breakers(results),
        _answers(results),
        _counted(results),
        *usage_verdicts(history, fake.account),
        Verdict(
            "every worker drained the shared outbox",
            all(r["drained"] for r in results),
            f"{sum(r['drained'] for r in results)} of {len(results)} drained",
        ),
    ]


def _breakers(results: list[dict[str, Any]]) -> Verdict:
    closed = sum(r["state"] == ConnectionState.CONNECTED.value for r in results)
    return Verdict(
        "every worker's breaker closed after Stigg returned",
        closed == len(results),
        f"{closed} of {len(results)} connected: {[r['state'] for r in results]}",
    )


def _answers(results: list[dict[str, Any]]) -> Verdict:
    fallback = [
        (n, customer, source)
        for n, r in enumerate(results)
        for customer, source in r["after"].items()
        if source not in SOURCES_FROM_STIGG
    ]
    asked = sum(len(r["after"]) for r in results)
    return Verdict(
        "no worker answers from the fallback for a customer Stigg knows, once it is back",
        not fallback,
        f"{asked} answers, {len(fallback)} from the fallback {fallback[:3]}",
    )


def _counted(results: list[dict[str, Any]]) -> Verdict:
    reported: dict[str, float] = dict.fromkeys(USAGE, 0.0)
    for result in results:
        for key, payload in result["reported"]:
            del key
            reported[json.loads(payload)["customerId"]] += 1.0
    wrong = [
        (n, customer, seen, reported[customer])
        for n, r in enumerate(results)
        for customer, seen in r["counted"].items()
        if seen != reported[customer]
    ]
    return Verdict(
        "usage reported through any worker is counted by every worker's checks",
        not wrong and sum(reported.values()) > 0,
        f"{sum(reported.values()):.0f} units reported, {len(wrong)} counts differ {wrong[:3]}",
    )
