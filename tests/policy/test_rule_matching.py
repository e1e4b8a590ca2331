"""One matching rule for customers, resources and plans: an id or a shell glob; ``*`` in
``resources`` is any resource, and ``null`` is the one way to match a check that names
no resource."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from stigg_cache import AsyncResilientClient, FallbackPolicy, PolicyError, ResilientClient, Source
from stigg_cache.cli import main
from stigg_cache.testing.fake import FakeMode, FakeStigg
from tests.conftest import API_KEY

RULES = """version: 1
rules:
  - name: gold-plans
    match: {plans: [plan-ent-*]}
    grant: {api_calls: {has_access: true}}
  - name: any-resource
    match: {resources: ["*"]}
    grant: {sso: {has_access: true}}
  - name: customer-level
    match: {resources: [null]}
    grant: {sso: {has_access: false}, seats: {has_access: true, value: 3}}
  - name: eu-or-none
    match: {resources: [null, "eu-*"]}
    grant: {models: {has_access: true}}
default: {has_access: false}
"""


@pytest.mark.parametrize(
    ("resource", "feature", "plans", "rule"),
    [
        (None, "api_calls", ("plan-ent-gold",), "gold-plans"),  # a glob of plans
        (None, "api_calls", ("basic", "plan-ent-silver"), "gold-plans"),  # any plan will do
        (None, "api_calls", ("plan-enterprise",), "default"),  # plan-ent-* is not plan-ent*
        (None, "api_calls", (), "default"),
        ("r1", "sso", (), "any-resource"),
        (None, "sso", (), "customer-level"),  # "*" is any resource, not no resource
        (None, "seats", (), "customer-level"),
        ("r1", "seats", (), "default"),  # null is no resource only
        (None, "models", (), "eu-or-none"),
        ("eu-west", "models", (), "eu-or-none"),
        ("us-east", "models", (), "default"),
    ],
)
def test_each_matcher_takes_ids_and_globs_alike(
    resource: str | None, feature: str, plans: tuple[str, ...], rule: str
) -> None:
    policy = FallbackPolicy.from_yaml(RULES)
    assert policy.resolve("acme", resource, feature, plans).rule == rule


@pytest.mark.parametrize("key", ["customers", "plans"])
def test_null_is_refused_outside_resources(key: str) -> None:
    text = f"version: 1\nrules:\n  - {{name: r, match: {{{key}: [null]}}, grant: {{x: {{has_access: true}}}}}}\n"
    with pytest.raises(PolicyError, match=r"expected a list of ids or glob patterns"):
        FallbackPolicy.from_yaml(text)


def test_a_bad_resources_matcher_says_how_no_resource_is_matched() -> None:
    text = "version: 1\nrules:\n  - {name: r, match: {resources: [1]}, grant: {x: {has_access: true}}}\n"
    with pytest.raises(PolicyError, match=r"'\*' is any resource, null a check that names no"):
        FallbackPolicy.from_yaml(text)


def _answers_offline(client: ResilientClient) -> tuple[tuple[bool, str | None], ...]:
    scoped = client.get_boolean_entitlement(customer_id="acme", feature_id="sso", resource_id="r1")
    customer = client.get_boolean_entitlement(customer_id="acme", feature_id="sso")
    return tuple(
        (answer.has_access, answer.decision.rule)
        for answer in (scoped, customer)
        if answer.decision.source is Source.POLICY
    )


def test_a_star_resource_rule_leaves_customer_level_checks_to_their_own_rule(
    fake: FakeStigg, tmp_path: Path
) -> None:
    fake.set_mode(FakeMode.DOWN)
    policy = FallbackPolicy.from_yaml(RULES)
    options: dict[str, Any] = {
        "store": f"sqlite:///{tmp_path}/c.db",
        "policy": policy,
        "check_timeout": 0.3,
    }
    with ResilientClient(None, api_key=API_KEY, base_url=fake.url, **options) as client:
        assert _answers_offline(client) == ((True, "any-resource"), (False, "customer-level"))

    async def story() -> tuple[tuple[bool, str | None], ...]:
        async with AsyncResilientClient(
            None, api_key=API_KEY, base_url=fake.url, **options
        ) as client:
            scoped = await client.get_boolean_entitlement(
                customer_id="acme", feature_id="sso", resource_id="r1"
            )
            customer = await client.get_boolean_entitlement(customer_id="acme", feature_id="sso")
            return tuple((a.has_access, a.decision.rule) for a in (scoped, customer))

    assert asyncio.run(story()) == ((True, "any-resource"), (False, "customer-level"))


def test_policy_check_warns_that_the_sidecar_cannot_match_plans(tmp_path: Path) -> None:
    path = tmp_path / "fallback.yaml"
    path.write_text(RULES)
    sidecar = CliRunner().invoke(main, ["policy", "check", str(path), "--client", "sidecar"])
    rest = CliRunner().invoke(main, ["policy", "check", str(path), "--client", "rest"])
    assert sidecar.exit_code == rest.exit_code == 0
    assert (
        "warning: rules gold-plans match plans, which the sidecar client cannot know"
        in sidecar.stderr
    )
    assert "match plans" not in rest.stderr
