"""``policy explain`` lists every rule, and why it matches the check or not, key by key:
a rule matches when every key it gives holds."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from stigg_cache import FallbackPolicy
from stigg_cache.cli import main
from stigg_cache.models import Snapshot
from stigg_cache.policy.explain import explain
from stigg_cache.stores import open_store
from stigg_cache.stores._codec import encode_snapshot, snapshot_key

POLICY = """version: 1
rules:
  - name: enterprise
    match: {customers: [acme, "ent-*"], plans: [plan-enterprise]}
    grant: {"*": {has_access: true}}
  - name: trials
    match: {customers: ["trial-*"]}
    grant: {api_calls: {has_access: true, usage_limit: 10}}
  - name: eu
    match: {resources: ["eu-*"]}
    grant: {sso: {has_access: false}}
"""


def _rules(lines: list[str]) -> list[str]:
    start = next(n for n, line in enumerate(lines) if line.startswith("rules, when"))
    return lines[start + 1 :]


@pytest.mark.parametrize(
    ("customer", "feature", "resource", "expected"),
    [
        (
            "acme",
            "sso",
            None,
            [
                (
                    "  1. enterprise: does not match (customers: 'acme' matches [acme, ent-*]; "
                    "plans: needs a snapshot; none is cached)"
                ),
                "  2. trials: does not match (customers: 'acme' matches none of [trial-*])",
                "  3. eu: does not match (resources: no resource matches none of [eu-*])",
            ],
        ),
        (
            "trial-7",
            "sso",
            "eu-west",
            [
                (
                    "  1. enterprise: does not match (customers: 'trial-7' matches none of "
                    "[acme, ent-*]; plans: needs a snapshot; none is cached)"
                ),
                (
                    "  2. trials: matches, but grants nothing for sso (no entry for it or '*'): "
                    "the next rule is tried (customers: 'trial-7' matches [trial-*])"
                ),
                (
                    "  3. eu: matches, and answers sso: has_access=False "
                    "(resources: 'eu-west' matches [eu-*])"
                ),
            ],
        ),
    ],
    ids=["a key that needs a snapshot", "a match that grants nothing falls through"],
)
def test_every_rule_is_listed_with_why_it_matches_or_not(
    customer: str, feature: str, resource: str | None, expected: list[str]
) -> None:
    policy = FallbackPolicy.from_yaml(POLICY)
    lines = explain(policy, customer_id=customer, feature_id=feature, resource_id=resource)
    assert _rules(lines) == expected


def test_plans_are_read_from_the_snapshot_held(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/cache.db"
    store = open_store(url)
    for customer, plans in (("ent-1", ("plan-enterprise",)), ("ent-2", ()), ("ent-3", ("basic",))):
        held = Snapshot(customer, None, {}, fetched_at=1.0, plan_ids=plans)  # long expired
        store.put(snapshot_key(customer, None), encode_snapshot(held))
    store.close()
    policy = tmp_path / "fallback.yaml"
    policy.write_text(POLICY)

    def explained(customer: str) -> str:  # as a user asks: the command, over the store
        result = CliRunner().invoke(
            main,
            [
                "policy",
                "explain",
                str(policy),
                "--customer",
                customer,
                "--feature",
                "sso",
                "--store",
                url,
            ],
        )
        assert result.exit_code == 0, result.output
        return _rules(result.output.splitlines())[0]

    first, second, third = (explained(c) for c in ("ent-1", "ent-2", "ent-3"))
    assert first == (
        "  1. enterprise: matches, and answers sso: has_access=True (customers: 'ent-1' "
        "matches [acme, ent-*]; plans: the snapshot's plans (plan-enterprise) include one of "
        "[plan-enterprise])"
    )
    assert second.endswith("plans: the snapshot held names no plan)")
    assert third.endswith("plans: the snapshot's plans (basic) include none of [plan-enterprise])")


def test_the_command_lists_the_rules(tmp_path: Path) -> None:
    policy = tmp_path / "fallback.yaml"
    policy.write_text(POLICY)
    result = CliRunner().invoke(
        main,
        [
            "policy",
            "explain",
            str(policy),
            "--customer",
            "acme",
            "--feature",
            "sso",
            "--store",
            f"sqlite:///{tmp_path}/absent.db",
        ],
    )
    assert result.exit_code == 2  # a store named but not there
    result = CliRunner().invoke(
        main, ["policy", "explain", str(policy), "--customer", "acme", "--feature", "sso"]
    )
    assert result.exit_code == 0, result.output
    assert "plans: needs a snapshot; none is cached" in result.output
    assert "every key must hold" in result.output


def test_a_policy_without_rules_says_so() -> None:
    lines = explain(FallbackPolicy(), customer_id="acme", feature_id="sso")
    assert lines[-1] == "rules: none (the feature's fallback, then the default, answer)"
