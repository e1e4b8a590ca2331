"""Chaos scenarios: a timeline of faults under a workload, judged afterwards.

A scenario is YAML (the built-in ones ship in ``stigg_cache/chaos/scenarios``)::

    name: flapping-network
    about: The link to Stigg goes up and down every second for ten seconds.
    duration: 14                       # seconds of workload
    workload: {threads: 4, checks_per_s: 200, reports_per_s: 20}
    steps:
      - {at: 2, flap: {refuse: true}, period: 1, for: 10}
      - {at: 5, stigg: rate_limited, retry_after: 2}
      - {at: 7, restart: true}         # a new client on the same store and outbox
                                       # (refused, and the old one kept, if the policy is broken)
      - {at: 7, kill: true}            # SIGKILL the usage-writer process, start another
      - {at: 8, corrupt_store: true}
      - {at: 9, edit_policy: invalid}
      - {at: 12, clear: true}

Step actions: ``fault`` (proxy faults, see :class:`~stigg_cache.testing.proxy.Faults`),
``flap``, ``clear``, ``stigg`` (the fake's mode), ``limits`` (Stigg's ingestion
rates: 429 with Retry-After on usage only), ``restart``, ``kill`` (a
separate process reporting usage into the same outbox is SIGKILLed and replaced),
``corrupt_store``, ``edit_policy`` (``valid`` or ``invalid``). After the
timeline every fault is cleared, the client must reconnect and drain, and the
invariants of :mod:`stigg_cache.chaos.history` and this module are judged.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from importlib.resources import files
from pathlib import Path
from typing import Any

import attrs
import yaml

from stigg_cache.chaos.history import (
    History,
    Operation,
    Outcome,
    Verdict,
    check_verdicts,
    usage_verdicts,
)
from stigg_cache.chaos.leaks import LeakWatch
from stigg_cache.chaos.workers import Workers, run_workers
from stigg_cache.chaos.workload import Driver, Workload
from stigg_cache.client import ResilientClient
from stigg_cache.core.pacing import EVENTS_PER_SECOND, USAGE_CALLS_PER_MINUTE
from stigg_cache.core.terms import Staleness
from stigg_cache.errors import ConfigurationError, StiggCacheError
from stigg_cache.models import ConnectionState
from stigg_cache.policy.model import FallbackPolicy
from stigg_cache.stores import SNAPSHOT_PREFIX, decode_snapshot, open_store
from stigg_cache.testing.fake import FakeMode, FakeStigg, boolean, metered
from stigg_cache.testing.faulty import FaultyStore
from stigg_cache.testing.proxy import FaultProxy, Faults

API_KEY = "sk-chaos-fake-key"
CHECK_TIMEOUT_S = 0.3
MARGIN_S = 0.25  # scheduling noise on a loaded machine
RECOVERY_S = 60.0
USAGE_PATHS = ("/api/v1/events", "/api/v2/usage")
HTTP_TOO_MANY_REQUESTS = 429
VALID_POLICY = """version: 1
staleness:
  fresh_for: 2s
  max_staleness: 1h
features:
  sso:
    fallback: {has_access: false}
default: {has_access: true}
"""
_STEP_KEYS = {
    *("fault", "flap", "clear", "stigg", "restart", "kill", "corrupt_store", "edit_policy"),
    *("store_fault", "limits", "clock", "fill_disk", "free_disk"),
}


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


@attrs.frozen
class Scenario:
    """A timeline of faults and the workload it runs under."""

    name: str
    about: str
    duration_s: float
    workload: Workload
    steps: tuple[Mapping[str, Any], ...]
    disk_mb: int | None = None  # the run's files on a tmpfs this small (for fill_disk)
    workers: Workers | None = None  # forked workers of one client (chaos.workers)

    @property
    def needs(self) -> str | None:
        """The extra this scenario needs and that is not installed (``the [chaos] extra``)."""
        if any("clock" in step for step in self.steps) and not _installed("time_machine"):
            return "the [chaos] extra"
        return None

    @property
    def missing(self) -> str | None:
        """What this scenario needs that is not installed, and how to install it (one
        line), or ``None``."""
        if self.needs is None:
            return None
        return f"needs {self.needs}: it steps the wall clock (pip install 'stigg-cache[chaos]')"

    @classmethod
    def from_yaml(cls, text: str, source: str = "<scenario>") -> Scenario:
        """Parse a scenario (safe YAML).

        Raises:
            ConfigurationError: what is wrong, and where.
        """
        raw = yaml.safe_load(text)
        if not isinstance(raw, dict) or not {"name", "duration", "steps"} <= raw.keys():
            raise ConfigurationError(f"{source}: a scenario needs name, duration and steps")
        steps = raw["steps"] or []
        for index, step in enumerate(steps):
            if not isinstance(step, dict) or "at" not in step or not _STEP_KEYS & step.keys():
                raise ConfigurationError(
                    f"{source}: steps[{index}] needs 'at' and one of {sorted(_STEP_KEYS)}"
                )
        return cls(
            name=str(raw["name"]),
            about=str(raw.get("about", "")),
            duration_s=float(raw["duration"]),
            workload=Workload(**(raw.get("workload") or {})),
            steps=tuple(sorted(steps, key=lambda step: float(step["at"]))),
            disk_mb=int(raw["disk"]) if raw.get("disk") else None,
            workers=Workers.from_raw(raw["workers"]) if raw.get("workers") else None,
        )


def builtin_scenarios() -> dict[str, Scenario]:
    """The scenarios shipped with the package, by name."""
    found = {}
    for entry in sorted(files("stigg_cache.chaos").joinpath("scenarios").iterdir(), key=str):
        if entry.name.endswith(".yaml"):
            scenario = Scenario.from_yaml(entry.read_text(encoding="utf-8"), entry.name)
            found[scenario.name] = scenario
    return found


@attrs.frozen
class Report:
    """What one scenario run showed (``skipped``: why it could not run here)."""

    scenario: str
    seconds: float
    verdicts: tuple[Verdict, ...]
    checks: int
    reports: int
    skipped: str | None = None

    @property
    def passed(self) -> bool:
        """It ran, and no invariant failed."""
        return self.skipped is None and all(v.passed for v in self.verdicts)


class ChaosRun:
    """One scenario against a fake Stigg behind a fault proxy, all on loopback."""

    def __init__(
        self,
        scenario: Scenario,
        workdir: Path,
        *,
        store: str | None = None,
        policy: str | None = None,
        inner: Callable[[str], object] | None = None,
    ) -> None:
        """Run ``scenario`` with files under ``workdir``.

        Args:
            store: the store URL to test (default: SQLite under ``workdir``).
            policy: the fallback.yaml text to test (default: a strict one).
            inner: builds the Stigg client for a base URL (default: the built-in one).
        """
        self.scenario = scenario
        self.workdir = workdir
        self._default_store = store is None
        self.store = store or f"sqlite:///{workdir}/cache.db"
        self._filler = workdir / "filler"
        self.outbox = f"sqlite:///{workdir}/outbox.db"
        self.policy_path = workdir / "fallback.yaml"
        self.policy_text = policy or VALID_POLICY
        self._inner = inner
        self.history = History()
        self._client: ResilientClient | None = None
        self._valid_versions: list[tuple[float, str]] = []
        self.refused_restarts: list[str] = []  # a new client refuses a broken policy file
        self._writers: list[_Writer] = []
        self._store: FaultyStore | None = None  # the store under test, opened by run()
        self._traveller: Any = None  # a time_machine.travel while the wall clock is moved

    def _open_client(self, proxy: FaultProxy) -> ResilientClient:
        return ResilientClient(
            None if self._inner is None else self._inner(proxy.url),
            api_key=None if self._inner is not None else API_KEY,
            base_url=None if self._inner is not None else proxy.url,
            store=self._faulty(),
            outbox=self.outbox,
            policy=self.policy_path,
            check_timeout=CHECK_TIMEOUT_S,
            outbox_lease_s=4.0,
        )

    def run(self) -> Report:
        """Run the timeline, recover, judge (on a small tmpfs if the scenario asks for one)."""
        if self.scenario.workers is not None:
            return self._with_workers(self.scenario.workers)
        if self.scenario.disk_mb is None:
            return self._run()
        disk = self.workdir / "disk"
        disk.mkdir(parents=True, exist_ok=True)
        size = f"size={self.scenario.disk_mb}m,mode=0700"
        mounted = subprocess.run(  # noqa: S603 - fixed arguments, our own folder
            ["mount", "-t", "tmpfs", "-o", size, "tmpfs", str(disk)],  # noqa: S607 - the system's mount
            capture_output=True,
            text=True,
            check=False,
        )
        if mounted.returncode:
            why = (mounted.stderr or "mount failed").strip().splitlines()[-1]
            skipped = f"needs a {self.scenario.disk_mb} MB tmpfs, which root mounts ({why})"
            return Report(self.scenario.name, 0.0, (), 0, 0, skipped=skipped)
        try:
            if self._default_store:
                self.store = f"sqlite:///{disk}/cache.db"
            self.outbox = f"sqlite:///{disk}/outbox.db"
            self.policy_path = disk / "fallback.yaml"
            self._filler = disk / "filler"
            return self._run()
        finally:
            subprocess.run(["umount", "-l", str(disk)], check=False, capture_output=True)  # noqa: S603, S607

    def _with_workers(self, plan: Workers) -> Report:
        """Forked workers of one client play the timeline (:mod:`stigg_cache.chaos.workers`)."""
        started = time.monotonic()

        def play(fake: FakeStigg, proxy: FaultProxy, zero: float) -> None:
            self._timeline(fake, proxy, zero)
            proxy.clear()
            fake.set_mode(FakeMode.UP)

        verdicts, checks, reports = run_workers(
            plan, self.scenario.duration_s, play, self.workdir, API_KEY
        )
        return Report(self.scenario.name, time.monotonic() - started, verdicts, checks, reports)

    def _run(self) -> Report:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.policy_path.write_text(self.policy_text)
        policy = FallbackPolicy.from_yaml(self.policy_text)
        budgets = [policy.staleness_for(f) for f in self.scenario.workload.features]
        leaks = LeakWatch()
        try:
            return self._judged(budgets, leaks)
        finally:
            leaks.stop()

    def _judged(self, budgets: list[Staleness], leaks: LeakWatch) -> Report:
        with FakeStigg(api_key=API_KEY) as fake, FaultProxy.to(fake.url) as proxy:
            for n in range(self.scenario.workload.customers):
                fake.set_customer(
                    f"customer-{n}", [boolean("sso"), metered("api_calls", limit=1e6, usage=0)]
                )
            self._warm_up(proxy)
            leaks.start_memory()
            started = time.monotonic()  # the timeline's zero
            self._store = FaultyStore(open_store(self.store))
            self._client = self._open_client(proxy)
            self._valid_versions.append((time.monotonic(), self._client.status().policy_version))
            driver = Driver(self._client_now, self.scenario.workload, self.history)
            driver.start()
            if any(step.get("kill") for step in self.scenario.steps):
                self._writer = _Writer(self, proxy.url, run=0)
                self._writers.append(self._writer)
            self._timeline(fake, proxy, started)
            driver.stop()
            self._jump_clock(0)
            for writer in self._writers:
                writer.close()
            proxy.clear()
            fake.set_mode(FakeMode.UP)
            verdicts = self._verdicts(fake, budgets)
        self._faulty().close()
        self._store = None
        kept = (self.history.operations, self._valid_versions, self.refused_restarts)
        verdicts.append(leaks.verdict(kept))
        return Report(
            self.scenario.name,
            time.monotonic() - started,
            tuple(verdicts),
            len(self.history.of("check")),
            len(self.history.of("report")),
        )

    def _warm_up(self, proxy: FaultProxy) -> None:
        """One client's life on files of its own, before memory is traced: what the first
        client of a process does once (imports, compiled templates) is not a leak."""
        folder = self.workdir / "warm-up"
        folder.mkdir(exist_ok=True)
        with ResilientClient(
            None if self._inner is None else self._inner(proxy.url),
            api_key=None if self._inner is not None else API_KEY,
            base_url=None if self._inner is not None else proxy.url,
            store=f"sqlite:///{folder}/cache.db",
            outbox=f"sqlite:///{folder}/outbox.db",
            policy=FallbackPolicy.from_yaml(self.policy_text),
            check_timeout=CHECK_TIMEOUT_S,
        ) as client:
            for feature in self.scenario.workload.features:
                client.get_boolean_entitlement(customer_id="customer-0", feature_id=feature)

    def _verdicts(self, fake: FakeStigg, budgets: list[Staleness]) -> list[Verdict]:
        """Once the faults are cleared: recovery, then every invariant of the run."""
        recovered = self._recover()
        client = self._client_now()
        status = client.status()
        client.close()
        del client
        self._client = None
        return [
            *check_verdicts(
                self.history,
                timeout_s=CHECK_TIMEOUT_S,
                margin_s=MARGIN_S,
                fresh_for_s=max(b.fresh_for_s for b in budgets),
                max_staleness_s=max(b.max_staleness_s for b in budgets),
            ),
            *usage_verdicts(self.history, fake.account),
            Verdict(
                "breaker recovered after faults cleared", recovered, f"state {status.state.value}"
            ),
            Verdict(
                "no usage dead-lettered",
                status.dead_letters == 0,
                f"{status.dead_letters} dead letter(s)",
            ),
            Verdict(
                "outbox drained after recovery",
                status.outbox_depth == 0,
                f"{status.outbox_depth} left, {fake.account.rate_limited} answered 429",
            ),
            self._policy_verdict(),
            self._store_verdict(),
            self._retry_after_verdict(fake),
        ]

    def _faulty(self) -> FaultyStore:
        assert self._store is not None, "the store is opened by run()"
        return self._store

    def _client_now(self) -> ResilientClient:
        assert self._client is not None
        return self._client

    def _timeline(self, fake: FakeStigg, proxy: FaultProxy, started: float) -> None:
        for step in self.scenario.steps:
            wait = started + float(step["at"]) - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            self._do(step, fake, proxy)
        rest = started + self.scenario.duration_s - time.monotonic()
        if rest > 0:
            time.sleep(rest)

    def _do(self, step: Mapping[str, Any], fake: FakeStigg, proxy: FaultProxy) -> None:
        self._network(step, fake, proxy)
        if step.get("restart"):
            self._restart(proxy)
        if step.get("kill"):
            self._writer.kill()
            self._writer = _Writer(self, proxy.url, run=len(self._writers))
            self._writers.append(self._writer)
        if step.get("corrupt_store"):
            self._corrupt_store()
        if "store_fault" in step:
            self._store_fault(step["store_fault"])
        if "edit_policy" in step:
            self._edit_policy(valid=step["edit_policy"] == "valid")
        if "clock" in step:
            self._jump_clock(float(step["clock"]))
        if step.get("fill_disk"):
            self._fill_disk()
        if step.get("free_disk"):
            self._filler.unlink(missing_ok=True)

    def _fill_disk(self) -> None:
        """Write a filler file until the file system is full (bounded by its size)."""
        chunk = b"\0" * 262_144
        with contextlib.suppress(OSError), self._filler.open("ab") as filler:
            for _ in range((self.scenario.disk_mb or 64) * 4 + 4):
                filler.write(chunk)
                filler.flush()

    def _jump_clock(self, seconds: float) -> None:
        """Move the wall clock by ``seconds`` from the real time (0: back to it).

        Only the wall clock moves (time-machine), as when NTP steps it:
        ``time.monotonic`` never jumps, so freezegun, which moves both, would
        test something that cannot happen.
        """
        if self._traveller is not None:
            self._traveller.stop()
            self._traveller = None
        if seconds:
            try:
                import time_machine  # noqa: PLC0415 - only scenarios with clock steps need it
            except ImportError as missing:
                raise ConfigurationError(
                    "clock steps need time-machine: pip install 'stigg-cache[chaos]'"
                ) from missing
            self._traveller = time_machine.travel(time.time() + seconds, tick=True)
            self._traveller.start()

    @staticmethod
    def _network(step: Mapping[str, Any], fake: FakeStigg, proxy: FaultProxy) -> None:
        """Steps that change what Stigg, or the way to it, does."""
        if "fault" in step:
            proxy.set(Faults(**step["fault"]))
        if "flap" in step:
            proxy.flap(
                Faults(**step["flap"]),
                period_s=float(step.get("period", 1)),
                duration_s=float(step.get("for", 10)),
            )
        if step.get("clear"):
            proxy.clear()
            fake.set_mode(FakeMode.UP)
        if "stigg" in step:
            fake.set_mode(
                FakeMode(step["stigg"]),
                delay_s=float(step.get("delay", 0)),
                retry_after_s=float(step.get("retry_after", 1)),
            )
        if "limits" in step:  # Stigg's own ingestion limits: 429s on usage only
            limits = step["limits"]
            fake.account.set_limits(
                float(limits.get("events_per_second", EVENTS_PER_SECOND)),
                float(limits.get("usage_calls_per_minute", USAGE_CALLS_PER_MINUTE)),
            )

    def _store_fault(self, what: object) -> None:
        """``heal``, ``slow: seconds``, or a list of operations that fail until healed."""
        store = self._faulty()
        if what == "heal":
            store.heal()
        elif isinstance(what, dict) and "slow" in what:
            store.slow(float(what["slow"]))
        elif isinstance(what, dict) and "fail_at" in what:
            store.fail_at(int(what["fail_at"]))
        elif isinstance(what, list):
            store.fail_all(what)
        else:
            forms = "heal, {slow: 0.2}, {fail_at: 3} or [get, put]"
            raise ConfigurationError(f"store_fault: write {forms}, not {what!r}")

    def _restart(self, proxy: FaultProxy) -> None:
        """A new client on the same store and outbox; the old one closes."""
        try:
            fresh = self._open_client(proxy)
        except StiggCacheError as error:  # e.g. fallback.yaml is broken right now
            self.refused_restarts.append(str(error).splitlines()[0])
            return
        old, self._client = self._client, fresh
        if old is not None:
            old.close()

    def _corrupt_store(self) -> None:
        store = open_store(self.store)
        try:
            for key in list(store.keys(SNAPSHOT_PREFIX))[:5]:
                value = store.get(key)
                if isinstance(value, bytes):
                    store.put(key, value[: len(value) // 2])  # truncated, as a torn write
        finally:
            store.close()

    def _edit_policy(self, *, valid: bool) -> None:
        if valid:
            self.policy_text += f"# saved again by the chaos run at {time.time():.3f}\n"
            self.policy_path.write_text(self.policy_text)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                version = self._client_now().status().policy_version
                if version != self._valid_versions[-1][1]:
                    self._valid_versions.append((time.monotonic(), version))
                    return
                time.sleep(0.05)
        else:
            self.policy_path.write_text("version: 1\nstaleness: {fresh_for: soon}\n")

    def _recover(self) -> bool:
        deadline = time.monotonic() + RECOVERY_S
        client = self._client_now()
        while time.monotonic() < deadline:
            client.get_boolean_entitlement(customer_id="customer-0", feature_id="sso")  # probes
            if (
                client.status().state is ConnectionState.CONNECTED
                and client.flush(timeout=2).drained
            ):
                return True
            time.sleep(0.2)
        return False

    def _policy_verdict(self) -> Verdict:
        valid = {version for _, version in self._valid_versions}
        versions = {op.detail.get("policy_version") for op in self.history.of("check", Outcome.OK)}
        foreign = versions - valid - {None}
        refused = (
            f", {len(self.refused_restarts)} restarts refused it" if self.refused_restarts else ""
        )
        return Verdict(
            "an invalid policy never replaced a valid one",
            not foreign,
            f"{len(valid)} valid versions in force, {len(foreign)} others seen{refused}",
        )

    def _retry_after_verdict(self, fake: FakeStigg) -> Verdict:
        """After a 429, the next send of the same kind waits its Retry-After (90 %: clocks)."""
        name = "usage sends wait out every Retry-After"
        if any(step.get("kill") or step.get("restart") for step in self.scenario.steps):
            return Verdict.not_judged(name, "several senders (restarts, kills)")
        answered, early = 0, 0
        for path in USAGE_PATHS:
            sends = [
                (at, status, hint)
                for at, method, p, status, hint in fake.log
                if method == "POST" and p == path
            ]
            for index, (at, status, hint) in enumerate(sends):
                if status == HTTP_TOO_MANY_REQUESTS and hint and index + 1 < len(sends):
                    answered += 1
                    early += sends[index + 1][0] < at + float(hint) * 0.9
        return Verdict(name, early == 0, f"{answered} answered 429, {early} sent again too early")

    def _store_verdict(self) -> Verdict:
        unreadable = 0
        try:
            store = open_store(self.store)
        except StiggCacheError as error:
            return Verdict("the store is readable after the run", passed=False, figures=str(error))
        try:
            keys = list(store.keys(SNAPSHOT_PREFIX))
            for key in keys:
                value = store.get(key)
                try:
                    if isinstance(value, bytes):
                        decode_snapshot(value)
                except StiggCacheError:
                    unreadable += 1
        finally:
            store.close()
        return Verdict(
            "the store is readable after the run",
            passed=True,  # a torn entry is a miss by design; it is refetched, never fatal
            figures=f"{len(keys)} snapshots, {unreadable} unreadable entries left (read as misses)",
        )


class _Writer:
    """The usage-writer process (``stigg_cache.chaos.writer``), its lines fed to the history."""

    def __init__(self, chaos: ChaosRun, base_url: str, *, run: int) -> None:
        self._history = chaos.history
        self._open: dict[str, Operation] = {}
        command = [sys.executable, "-m", "stigg_cache.chaos.writer", chaos.store, chaos.outbox]
        self.process = subprocess.Popen(  # noqa: S603 - our own module, our own interpreter
            [*command, base_url, API_KEY, str(run), str(chaos.policy_path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            message = json.loads(line)
            if "invoke" in message:
                self._open[message["invoke"]] = self._history.invoke(
                    "report",
                    time.monotonic(),
                    records={message["invoke"]: message["payload"]},
                    writer=True,
                )
            elif "ok" in message and message["ok"] in self._open:
                self._history.end(self._open.pop(message["ok"]), Outcome.OK, time.monotonic())
            elif "check" in message:  # answered in the child; its own timing
                check = dict(message["check"])
                now = time.monotonic()
                operation = self._history.invoke("check", now - check.pop("elapsed_s"), writer=True)
                self._history.end(operation, Outcome.OK, now, **check)

    def kill(self) -> None:
        """SIGKILL: whatever it was doing is cut short."""
        self.process.kill()
        self._finish()

    def close(self) -> None:
        """Let it stop by itself (standard input closes)."""
        if self.process.poll() is None and self.process.stdin is not None:
            self.process.stdin.close()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self._finish()

    def _finish(self) -> None:
        self.process.wait(timeout=10)
        self._reader.join(timeout=5)
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None and not pipe.closed:
                pipe.close()
