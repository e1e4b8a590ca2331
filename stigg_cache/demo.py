"""`make demo`: a short, honest outage story against the fake Stigg.

It prints the policy it runs with, then: warm up, Stigg blackholed, checks
keep answering (STALE, then POLICY/DEFAULT for customers never seen), live
policy edits (a good one taken, a broken one rejected), a process restart
while offline served from the SQLite store, Stigg back: the automatic
reconciliation report, fresh data again. Every line is a real check.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import logging
import queue
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from stigg_cache import ReconcileReport, ResilientClient, Source
from stigg_cache.models import AnyEntitlement, ConnectionState, MeteredEntitlement
from stigg_cache.testing.fake import FakeMode, FakeStigg
from stigg_cache.testing.standalone import DEMO_CUSTOMERS, account_from

API_KEY = "sk-demo-not-a-real-key"
CHECK_TIMEOUT_S = 0.3
SETTLE_S = 0.5  # the fake aggregates in 0.2 s; real Stigg takes ~10 s (default settle: 30 s)
FRESH_FOR_S = 1.0  # as POLICY_YAML says
RECONNECT_WAIT_S = 30.0  # the breaker's backoff between probes is at most 30 s
POLICY_YAML = """\
version: 1
staleness: {fresh_for: 1s, max_staleness: 60s}
features:
  sso: {fallback: {has_access: false}}
  api_calls: {fallback: {has_access: true, usage_limit: 100}}
rules:
  - name: enterprise
    match: {customers: ["ent-*"]}
    grant: {"*": {has_access: true}}
default: {has_access: false}
meters:
  api_calls: {event: api.request, aggregate: count}
"""
INCIDENT_RULE = """\
  - name: incident-grace-newcorp
    match: {customers: [newcorp]}
    grant: {sso: {has_access: true}}
"""
ROW = "{:<34} {:<10} {:<9} {:<6} {:<8} {:>7} {:>9}  {}"


def _inner(base_url: str) -> Any:
    """The official REST SDK if installed, else the built-in client."""
    try:
        import stigg  # noqa: PLC0415 - optional extra

        return stigg.Stigg(api_key=API_KEY, base_url=base_url)
    except ImportError:
        return None


def _inner_shown() -> str:
    return "None" if importlib.util.find_spec("stigg") is None else "stigg.Stigg(...)"


def _client(store_url: str, base_url: str, policy: Path) -> ResilientClient:
    return ResilientClient(
        _inner(base_url),
        api_key=API_KEY,
        base_url=base_url,
        store=store_url,
        policy=policy,
        check_timeout=CHECK_TIMEOUT_S,
        settle_s=SETTLE_S,
    )


def _check(client: ResilientClient, step: str, customer: str, feature: str) -> list[str]:
    started = time.perf_counter()
    result: AnyEntitlement = (
        client.get_metered_entitlement(customer_id=customer, feature_id=feature)
        if feature == "api_calls"
        else client.get_boolean_entitlement(customer_id=customer, feature_id=feature)
    )
    latency_ms = (time.perf_counter() - started) * 1000
    decision = result.decision
    age = "-" if decision.age_s is None else f"{decision.age_s:.1f}s"
    note = decision.rule or ("" if decision.reason is None else decision.reason[:48])
    if isinstance(result, MeteredEntitlement) and not note:
        note = f"usage {result.current_usage:g} of {result.usage_limit or 0:g}"
    answer = "allow" if result.has_access else "deny"
    return [
        step,
        customer,
        feature,
        answer,
        decision.source.value,
        age,
        f"{latency_ms:.1f}ms",
        note,
    ]


def _print(row: list[str]) -> None:
    print(ROW.format(*row), flush=True)


def _restart_child(store_url: str, base_url: str, policy: str) -> None:
    """A fresh process: nothing in memory, Stigg unreachable, the store on disk."""
    with _client(store_url, base_url, Path(policy)) as client:
        client.report_usage(customer_id="acme", feature_id="api_calls", value=5)
        rows = [
            _check(client, "3. restarted process, offline", "acme", "sso"),
            _check(client, "3. restarted, +5 calls offline", "acme", "api_calls"),
        ]
    print(json.dumps(rows))


def _save(policy: Path, text: str) -> None:
    """Save as editors and Kubernetes do: write beside, then rename over the file (one
    change the watcher sees; the policy has a folder of its own, away from the SQLite files)."""
    draft = policy.parent.parent / f".{policy.name}.draft"
    draft.write_text(text)
    draft.replace(policy)


def _wait_for_policy(client: ResilientClient, old_version: str) -> None:
    deadline = time.monotonic() + 5
    status = client.status()
    while status.policy_version == old_version and status.policy_error is None:
        if time.monotonic() > deadline:
            return
        time.sleep(0.05)
        status = client.status()


def _wait_for_refresh(client: ResilientClient, customer: str) -> None:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        answer = client.get_boolean_entitlement(customer_id=customer, feature_id="sso")
        if answer.decision.source is not Source.STALE:
            return
        time.sleep(0.05)


def _header(workdir: Path) -> None:
    print("stigg-cache demo: a fake Stigg on loopback;")
    print(f"SQLite store and outbox in {workdir}, fallback.yaml in {workdir / 'policy'}\n")
    print(
        f"client: ResilientClient({_inner_shown()}, check_timeout={CHECK_TIMEOUT_S}, "
        f"settle_s={SETTLE_S}, policy=fallback.yaml)"
    )
    print("fallback.yaml (fresh_for: cached answers are CACHE for 1s, then STALE up to 60s):")
    print("".join(f"   | {line}\n" for line in POLICY_YAML.splitlines()))
    _print(["step", "customer", "feature", "answer", "tier", "age", "latency", "rule / why"])
    _print(["-" * 33, "-" * 10, "-" * 9, "-" * 6, "-" * 8, "-" * 7, "-" * 9, "-" * 30])


def _outage(client: ResilientClient, fake: FakeStigg, policy: Path) -> None:
    fake.set_mode(FakeMode.BLACKHOLE)
    time.sleep(1.2)  # past fresh_for: what was CACHE is now STALE
    _print(_check(client, "2. Stigg blackholed", "acme", "sso"))
    client.report_usage(customer_id="acme", feature_id="api_calls", value=25)
    client.report_event([{"customer_id": "acme", "event_name": "api.request"}] * 10)
    depth = client.status().outbox_depth
    print(f"   acme used 25 + 10 api calls; buffered durably: outbox depth {depth}")
    _print(_check(client, "2. Stigg blackholed", "acme", "api_calls"))
    _print(_check(client, "2. Stigg blackholed (cold)", "ent-7", "sso"))
    _print(_check(client, "2. Stigg blackholed (cold)", "newcorp", "sso"))
    _print(_check(client, "2. 3rd failure: breaker opens", "cold-0", "api_calls"))
    _print(_check(client, "2. breaker open: no waiting", "cold-1", "api_calls"))
    status = client.status()
    print(f"\n   status: {status.state.value}, last error: {status.last_error}\n")
    old = status.policy_version
    _save(policy, POLICY_YAML.replace("default:", INCIDENT_RULE + "default:"))
    _wait_for_policy(client, old)
    new = client.status().policy_version
    print(f"   operator adds a rule to fallback.yaml: policy {old} -> {new}")
    _print(_check(client, "2. after the live edit", "newcorp", "sso"))
    print("   operator saves a broken fallback.yaml; the watcher rejects it (log below):")
    _save(policy, POLICY_YAML + "rules: [oops\n")
    _wait_for_policy(client, new)
    _print(_check(client, "2. after the broken edit", "newcorp", "sso"))
    print()


def _restart(store_url: str, fake: FakeStigg, policy: Path) -> None:
    fake.set_mode(FakeMode.DOWN)
    _save(policy, POLICY_YAML)
    child = subprocess.run(  # noqa: S603 - our own module, our own arguments
        [
            sys.executable,
            "-m",
            "stigg_cache.demo",
            "--restart-child",
            store_url,
            fake.url,
            str(policy),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    for row in json.loads(child.stdout):
        _print(row)


def _reconnect(client: ResilientClient, reports: queue.Queue[ReconcileReport]) -> None:
    """Checks go on as traffic would; one of them is the breaker's probe once its
    backoff ends, and reconnecting starts the automatic reconciliation."""
    _print(_check(client, "4. Stigg back (first check)", "acme", "sso"))
    started = time.monotonic()
    deadline = started + RECONNECT_WAIT_S
    while client.status().state is not ConnectionState.CONNECTED and time.monotonic() < deadline:
        time.sleep(0.25)
        client.get_boolean_entitlement(customer_id="acme", feature_id="sso")
    waited = time.monotonic() - started
    if client.status().state is not ConnectionState.CONNECTED:
        print(f"   still not reconnected after {waited:.0f}s: {client.status().last_error}")
        return
    print(f"   reconnected after {waited:.1f}s (the breaker's backoff)")
    try:
        report = reports.get(timeout=max(1.0, deadline - time.monotonic()))
    except queue.Empty:
        print("   no reconciliation report yet")
        return
    checked, dropped = report.decisions_checked, report.decisions_dropped
    print(
        f"   automatic reconciliation (on_reconcile): {checked} offline decisions checked"
        f"{f' ({dropped} not covered)' if dropped else ''}, "
        f"{sum(c.count for c in report.contradictions)} contradicted by fresh data, "
        f"{report.customers_refreshed} customers refreshed, outbox drained: {report.outbox_drained}"
    )
    for contradiction in report.contradictions:
        where = f"{contradiction.customer_id}/{contradiction.feature_id}"
        times = f" ({contradiction.count} decisions)" if contradiction.count > 1 else ""
        print(f"     - {where}{times}: {contradiction.explanation}")  # "granted offline, but …"


def _recovery(
    client: ResilientClient, fake: FakeStigg, reports: queue.Queue[ReconcileReport]
) -> None:
    _reconnect(client, reports)
    client.flush(timeout=10)
    account = fake.account
    print(
        f"   Stigg received {len(account.events)} events and {len(account.usages)} usage "
        "records, each once"
    )
    # Past fresh_for and settle_s: the next check revalidates, and the snapshot it brings
    # counts what Stigg aggregated, so our local count of that usage retires.
    time.sleep(max(FRESH_FOR_S, SETTLE_S) + 0.3)
    _print(_check(client, "4. Stigg back (revalidating)", "acme", "sso"))
    _wait_for_refresh(client, "acme")
    _print(_check(client, "4. Stigg back", "acme", "sso"))
    _print(_check(client, "4. Stigg back (Stigg's count)", "acme", "api_calls"))
    _print(_check(client, "4. Stigg back", "newcorp", "sso"))
    print(
        f"\n   status: {client.status().state.value}, outbox depth {client.status().outbox_depth}"
    )


def _story(workdir: Path) -> None:
    store_url = f"sqlite:///{workdir / 'stigg-cache.db'}"
    policy = workdir / "policy" / "fallback.yaml"
    policy.parent.mkdir(mode=0o700)
    policy.write_text(POLICY_YAML)
    _header(workdir)
    account = account_from(DEMO_CUSTOMERS, aggregation_delay_s=0.2)
    with FakeStigg(api_key=API_KEY, account=account) as fake:
        reports: queue.Queue[ReconcileReport] = queue.Queue()
        with _client(store_url, fake.url, policy) as client:
            client.on_reconcile(reports.put)
            for feature in ("sso", "api_calls", "sso"):
                _print(_check(client, "1. Stigg up: warm", "acme", feature))
            _outage(client, fake, policy)
            _restart(store_url, fake, policy)
            fake.set_mode(FakeMode.UP)
            _recovery(client, fake, reports)


def main() -> None:
    """Run the story (or, with --restart-child, the restarted process in it)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--restart-child", nargs=3, metavar=("STORE_URL", "BASE_URL", "POLICY"))
    args = parser.parse_args()
    if isinstance(sys.stdout, io.TextIOWrapper):  # rows and log lines in the order they happen
        sys.stdout.reconfigure(line_buffering=True)
    if args.restart_child:
        _restart_child(*args.restart_child)
        return
    logging.basicConfig(format="   log: %(message)s", level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="stigg-cache-demo-") as workdir:
        Path(workdir).chmod(0o700)
        _story(Path(workdir))


if __name__ == "__main__":
    main()
