"""`make demo`: a short, honest outage story against the fake Stigg.

Warm up, Stigg blackholed, checks keep answering (STALE, then POLICY/DEFAULT
for customers never seen), a process restart while offline served from the
SQLite store, Stigg back, fresh data again. Every line is a real check.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from stigg_cache import ResilientClient
from stigg_cache.chaos.fake import FakeMode, FakeStigg, boolean, metered
from stigg_cache.models import AnyEntitlement

API_KEY = "sk-demo-not-a-real-key"
CHECK_TIMEOUT_S = 0.3
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


def _client(store_url: str, base_url: str, policy: Path) -> ResilientClient:
    return ResilientClient(
        _inner(base_url),
        api_key=API_KEY,
        base_url=base_url,
        store=store_url,
        policy=policy,
        check_timeout=CHECK_TIMEOUT_S,
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
        rows = [
            _check(client, "3. restarted process, offline", "acme", "sso"),
            _check(client, "3. restarted process, offline", "acme", "api_calls"),
        ]
    print(json.dumps(rows))


def _wait_for_policy(client: ResilientClient, old_version: str) -> None:
    deadline = time.monotonic() + 5
    status = client.status()
    while status.policy_version == old_version and status.policy_error is None:
        if time.monotonic() > deadline:
            return
        time.sleep(0.05)
        status = client.status()


def _story(workdir: Path) -> None:
    store_url = f"sqlite:///{workdir / 'stigg-cache.db'}"
    policy = workdir / "fallback.yaml"
    policy.write_text(POLICY_YAML)
    print(
        f"stigg-cache demo: fake Stigg on loopback, SQLite store and fallback.yaml in {workdir}\n"
    )
    _print(["step", "customer", "feature", "answer", "tier", "age", "latency", "rule / why"])
    _print(["-" * 33, "-" * 10, "-" * 9, "-" * 6, "-" * 8, "-" * 7, "-" * 9, "-" * 30])
    with FakeStigg(api_key=API_KEY) as fake:
        fake.set_customer("acme", [boolean("sso"), metered("api_calls", limit=1000, usage=420)])
        with _client(store_url, fake.url, policy) as client:
            for feature in ("sso", "api_calls", "sso"):
                _print(_check(client, "1. Stigg up: warm", "acme", feature))
            fake.set_mode(FakeMode.BLACKHOLE)
            time.sleep(1.2)  # past fresh_for: what was CACHE is now STALE
            _print(_check(client, "2. Stigg blackholed", "acme", "sso"))
            _print(_check(client, "2. Stigg blackholed", "acme", "api_calls"))
            _print(_check(client, "2. Stigg blackholed (cold)", "ent-7", "sso"))
            _print(_check(client, "2. Stigg blackholed (cold)", "newcorp", "sso"))
            for n in range(2):
                _print(_check(client, "2. breaker open", f"cold-{n}", "api_calls"))
            status = client.status()
            print(f"\n   status: {status.state.value}, last error: {status.last_error}\n")
            old = status.policy_version
            policy.write_text(POLICY_YAML.replace("default:", INCIDENT_RULE + "default:"))
            _wait_for_policy(client, old)
            new = client.status().policy_version
            print(f"   operator adds a rule to fallback.yaml: policy {old} -> {new}")
            _print(_check(client, "2. after the live edit", "newcorp", "sso"))
            old = client.status().policy_version
            policy.write_text(POLICY_YAML + "rules: [oops\n")
            _wait_for_policy(client, old)
            error = (client.status().policy_error or "").splitlines()
            reason = error[1].strip() if len(error) > 1 else "?"
            print(f"   operator saves a broken file, rejected: {reason}")
            _print(_check(client, "2. after the broken edit", "newcorp", "sso"))
            print()
        fake.set_mode(FakeMode.DOWN)
        policy.write_text(POLICY_YAML)
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
        fake.set_mode(FakeMode.UP)
        with _client(store_url, fake.url, policy) as client:
            _print(_check(client, "4. Stigg back (revalidating)", "acme", "sso"))
            time.sleep(0.3)  # the background refresh lands
            _print(_check(client, "4. Stigg back", "acme", "sso"))
            _print(_check(client, "4. Stigg back", "acme", "api_calls"))
            _print(_check(client, "4. Stigg back", "newcorp", "sso"))
            print(f"\n   status: {client.status().state.value}")


def main() -> None:
    """Run the story (or, with --restart-child, the restarted process in it)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--restart-child", nargs=3, metavar=("STORE_URL", "BASE_URL", "POLICY"))
    args = parser.parse_args()
    if args.restart_child:
        _restart_child(*args.restart_child)
        return
    logging.basicConfig(format="   log: %(message)s", level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="stigg-cache-demo-") as workdir:
        Path(workdir).chmod(0o700)
        _story(Path(workdir))


if __name__ == "__main__":
    main()
