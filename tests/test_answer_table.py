"""One account, every tier, every check method: one answer per (state, method) (#29).

The same Stigg account is asked through every getter while its snapshot is
fetched now (LIVE), fresh (CACHE), stale with Stigg down (STALE), and gone past
``max_staleness`` with Stigg down (POLICY / DEFAULT, from a policy that states the
same terms and with the customer's usage reported offline). Every tier gives the
answer of the table, on the threads' client and the event loop's; the table is
the docs' page on how a check is answered (docs/checks.md), rendered here and compared.
"""

from __future__ import annotations

import asyncio
import inspect
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import pytest

from stigg_cache import (
    AsyncResilientClient,
    FallbackPolicy,
    Grant,
    ResilientClient,
    Rule,
    Source,
    Staleness,
)
from stigg_cache.core.breaker import CircuitBreaker
from stigg_cache.testing import ManualClock
from stigg_cache.testing.fake import FakeMode, FakeStigg, boolean, enum_feature, metered, numeric
from tests.conftest import API_KEY

PAGE = Path(__file__).parent.parent / "docs" / "checks.md"
TABLE_START, TABLE_END = "<!-- answer-table: start -->", "<!-- answer-table: end -->"
REWRITE = "STIGG_CACHE_WRITE_ANSWER_TABLE"  # set it to 1 to write the table into the page
FRESH_FOR_S, MAX_STALENESS_S = 60.0, 3600.0
TIERS = ("LIVE", "CACHE", "STALE", "POLICY / DEFAULT")


@attrs.frozen
class State:
    """A row: what the account holds for one customer's feature."""

    name: str
    customer_id: str
    feature_id: str
    resource_id: str | None = None
    requested_values: tuple[str, ...] | None = None


STATES = (
    State("boolean", "acme", "sso"),
    State("numeric (25)", "acme", "seats"),
    State("metered, hard limit, 10 of 10 used", "acme", "api_calls"),
    State("metered, soft limit, 14 of 10 used", "acme", "api_soft"),
    State("metered, unlimited", "acme", "api_unlimited"),
    State("enum (asked for `claude`)", "acme", "models", requested_values=("claude",)),
    State("resource-scoped (`r-1`)", "acme", "deploys", resource_id="r-1"),
    State("promotional", "acme", "beta"),
    State("no subscription", "lapsed", "sso"),
    State("unknown customer", "ghost", "sso"),
)
METHODS = (
    "get_boolean_entitlement",
    "get_numeric_entitlement",
    "get_metered_entitlement",
    "get_enum_entitlement",
    "get_entitlement",
    "has_access",
)
OVER = "RequestedUsageExceedingLimit"
# (state, method) -> Stigg's answer: None grants, else the denial's reason. Every tier gives
# this access; the snapshot's tiers this reason too (the policy's denials say their own).
EXPECTED: dict[str, str | None] = {
    "boolean": None,
    "numeric (25)": None,
    "metered, hard limit, 10 of 10 used": OVER,  # one unit asked for, none left
    "metered, soft limit, 14 of 10 used": None,
    "metered, unlimited": None,
    "enum (asked for `claude`)": None,
    "resource-scoped (`r-1`)": None,
    "promotional": None,
    "no subscription": "NoActiveSubscription",
    "unknown customer": "CustomerNotFound",
}
# The policy stating the same terms: what the POLICY / DEFAULT column answers from.
POLICY = FallbackPolicy(
    staleness=Staleness(fresh_for_s=FRESH_FOR_S, max_staleness_s=MAX_STALENESS_S),
    rules=(
        Rule(
            "acme-r-1", {"deploys": Grant(has_access=True)}, customers=("acme",), resources=("r-1",)
        ),
        Rule(
            "acme",
            {
                "sso": Grant(has_access=True),
                "seats": Grant(has_access=True, value=25),
                "api_calls": Grant(has_access=True, usage_limit=10),
                "api_soft": Grant(has_access=True),
                "api_unlimited": Grant(has_access=True, is_unlimited=True),
                "models": Grant(has_access=True, enum_values=("gpt-4", "claude")),
                "beta": Grant(has_access=True),
            },
            customers=("acme",),
        ),
    ),
    default=Grant(has_access=False),
)


def _account(fake: FakeStigg) -> None:
    soft = attrs.evolve(metered("api_soft", limit=10, usage=14), has_soft_limit=True)
    fake.set_customer(
        "acme",
        [
            boolean("sso"),
            numeric("seats", 25),
            metered("api_calls", limit=10, usage=10),
            soft,
            metered("api_unlimited", limit=None, usage=500, unlimited=True),
            enum_feature("models", ["gpt-4", "claude"]),
        ],
    )
    fake.account.grant_promotions("acme", {"promotionalEntitlements": [{"featureId": "beta"}]})
    fake.set_customer("acme", [boolean("deploys")], resource_id="r-1")
    fake.set_customer("lapsed", [], access_denied_reason="NoActiveSubscription")


def _arguments(state: State, method: str) -> tuple[tuple[Any, ...], dict[str, Any]]:
    kwargs: dict[str, Any] = {"feature_id": state.feature_id, "resource_id": state.resource_id}
    if method in {"get_enum_entitlement", "get_entitlement"} and state.requested_values:
        kwargs["requested_values"] = list(state.requested_values)
    if method == "has_access":
        return (state.customer_id, state.feature_id), {"resource_id": state.resource_id}
    return (), {"customer_id": state.customer_id, **kwargs}


Answer = tuple[bool, str | None, Source | None]  # access, reason, tier (None: has_access)


async def _ask(client: Any, state: State, method: str) -> Answer:
    args, kwargs = _arguments(state, method)
    answer = getattr(client, method)(*args, **kwargs)
    if inspect.isawaitable(answer):
        answer = await answer
    if isinstance(answer, bool):
        return answer, None, None
    return answer.has_access, answer.access_denied_reason, answer.decision.source


async def _maybe(result: Any) -> Any:
    return await result if inspect.isawaitable(result) else result


async def _every_tier(client: Any, fake: FakeStigg, clock: ManualClock) -> dict[str, Answer]:
    """Every (tier, state, method)'s answer from one client, tier by tier."""
    answers: dict[str, Answer] = {}
    for state in STATES:
        for method in METHODS:
            clock.advance(MAX_STALENESS_S + 1)  # what is held has expired: Stigg answers
            answers[f"LIVE|{state.name}|{method}"] = await _ask(client, state, method)
            answers[f"CACHE|{state.name}|{method}"] = await _ask(client, state, method)
    clock.advance(MAX_STALENESS_S + 1)
    for scope in {(s.customer_id, s.resource_id) for s in STATES}:  # every snapshot fresh
        await _maybe(client.get_entitlements(customer_id=scope[0], resource_id=scope[1]))
    fake.set_mode(FakeMode.DOWN)
    clock.advance(FRESH_FOR_S + 1)
    for state in STATES:
        for method in METHODS:
            answers[f"STALE|{state.name}|{method}"] = await _ask(client, state, method)
    # the whole allowance used, as the policy learns it: reported while Stigg is away
    await _maybe(client.report_usage(customer_id="acme", feature_id="api_calls", value=10))
    clock.advance(MAX_STALENESS_S + 1)
    for state in STATES:
        for method in METHODS:
            answers[f"POLICY / DEFAULT|{state.name}|{method}"] = await _ask(client, state, method)
    return answers


def _options(tmp_path: Path, fake: FakeStigg, clock: ManualClock) -> dict[str, Any]:
    return {
        "api_key": API_KEY,
        "base_url": fake.url,
        "store": f"sqlite:///{tmp_path}/cache.db",
        "policy": POLICY,
        "clock": clock,
        "check_timeout": 10.0,  # a loaded machine still fetches LIVE (DOWN refuses at once)
        "breaker": CircuitBreaker(failure_threshold=10_000),  # every fetch is tried
    }


def _threads(tmp_path: Path, fake: FakeStigg, clock: ManualClock) -> dict[str, Answer]:
    with ResilientClient(None, **_options(tmp_path, fake, clock)) as client:
        return asyncio.run(_every_tier(client, fake, clock))


def _event_loop(tmp_path: Path, fake: FakeStigg, clock: ManualClock) -> dict[str, Answer]:
    async def story() -> dict[str, Answer]:
        async with AsyncResilientClient(None, **_options(tmp_path, fake, clock)) as client:
            return await _every_tier(client, fake, clock)

    return asyncio.run(story())


def _wrong(answers: dict[str, Answer]) -> list[str]:
    """Every answer that is not the table's, or not from the tier it was asked in."""
    wrong = []
    for key, (has_access, reason, source) in answers.items():
        tier, state, _ = key.split("|")
        expected = EXPECTED[state]
        if has_access is not (expected is None):
            wrong.append(f"{key}: {'granted' if has_access else reason}")
        elif tier != "POLICY / DEFAULT" and source is not None and reason != expected:
            wrong.append(f"{key}: {reason}, not {expected}")
        elif source is not None and source.name not in tier.split(" / "):
            wrong.append(f"{key}: answered {source.name}")
    return wrong


@pytest.mark.parametrize("client", [_threads, _event_loop], ids=["threads", "event-loop"])
def test_every_tier_gives_one_answer_per_state_and_method(
    client: Callable[[Path, FakeStigg, ManualClock], dict[str, Answer]],
    fake: FakeStigg,
    tmp_path: Path,
) -> None:
    _account(fake)
    answers = client(tmp_path, fake, ManualClock())
    assert len(answers) == len(TIERS) * len(STATES) * len(METHODS)
    wrong = _wrong(answers)
    assert wrong == [], "\n".join(wrong)


def test_at_the_limit_every_tier_denies_a_check_that_asks_for_no_usage(
    fake: FakeStigg, tmp_path: Path
) -> None:
    """10 of 10: ``has_access()`` and ``get_entitlement()`` ask for one unit in every tier
    (the policy's answer used to count none and grant what the snapshot's denied)."""
    _account(fake)
    answers = _threads(tmp_path, fake, ManualClock())
    hard = "metered, hard limit, 10 of 10 used"
    assert {
        (key.split("|")[0], key.split("|")[2]): has_access
        for key, (has_access, _, _) in answers.items()
        if key.split("|")[1] == hard and key.split("|")[2] in {"has_access", "get_entitlement"}
    } == {(tier, method): False for tier in TIERS for method in ("get_entitlement", "has_access")}


def render() -> str:
    """The table as the page shows it."""
    names = ["`boolean`", "`numeric`", "`metered`", "`enum`", "`get_entitlement`", "`has_access`"]
    lines = [
        "| state | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for state in STATES:
        reason = EXPECTED[state.name]
        cell = "granted" if reason is None else f"denied: {reason}"
        lines.append(f"| {state.name} | " + " | ".join([cell] * len(METHODS)) + " |")
    return "\n".join([TABLE_START, *lines, TABLE_END])


def test_the_docs_show_this_table() -> None:
    text = PAGE.read_text(encoding="utf-8")
    start, end = text.find(TABLE_START), text.find(TABLE_END)
    assert start != -1, f"docs/checks.md has no {TABLE_START}"
    assert end != -1, f"docs/checks.md has no {TABLE_END}"
    shown = text[start : end + len(TABLE_END)]
    if shown != render() and os.environ.get(REWRITE) == "1":
        PAGE.write_text(text.replace(shown, render()), encoding="utf-8")
        return
    assert shown == render(), f"docs/checks.md's answer table is out of date: run with {REWRITE}=1"
