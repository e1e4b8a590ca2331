"""The reconciliation report lists exactly the contradictions of an outage (#29 items 5, 6).

A scripted outage: every customer's snapshot is held (stale), Stigg goes
away, and during the outage Stigg changes everything it can change — a
feature removed from the plan, a subscription ended, a limit lowered or
raised, a limit made soft, usage reset, a promotion granted and one revoked,
a subscription started — while the host answers checks offline (from stale
snapshots, and from the policy for customers it never saw) and reports
usage. Each offline decision is judged against what Stigg would have answered
when it was made, given the usage reported before it: the report names
exactly the decisions that disagree, no more, no fewer.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs
import pytest

from stigg_cache import (
    AsyncResilientClient,
    FallbackPolicy,
    FeaturePolicy,
    Grant,
    ReconcileReport,
    ResilientClient,
    Staleness,
)
from stigg_cache.core.breaker import CircuitBreaker
from stigg_cache.testing import ManualClock
from stigg_cache.testing.fake import FakeMode, FakeStigg, boolean, metered
from tests.conftest import API_KEY
from tests.helpers import eventually

POLICY = FallbackPolicy(
    staleness=Staleness(fresh_for_s=1, max_staleness_s=3600),
    features={"api_calls": FeaturePolicy(fallback=Grant(has_access=True, usage_limit=1000))},
)
BACKOFF_S = 600.0  # the breaker stays open for the whole outage (clock time)


def _calls(limit: float, usage: float, **changes: Any) -> Any:
    return attrs.evolve(metered("api_calls", limit=limit, usage=usage), **changes)


def _before(fake: FakeStigg) -> None:
    """The account as the host last fetched it."""
    account = fake.account
    for customer in ("removed", "ended", "unchanged"):
        fake.set_customer(customer, [_calls(100, 10)])
    fake.set_customer("bool-removed", [boolean("sso")])
    fake.set_customer("lowered", [_calls(100, 50)])
    fake.set_customer("lowered-mid", [_calls(10, 0)])
    fake.set_customer("soft", [_calls(10, 14, has_soft_limit=True)])
    fake.set_customer("last-unit", [_calls(10, 9)])
    for customer in ("reset", "made-soft", "raised"):
        fake.set_customer(customer, [_calls(10, 10)])
    fake.set_customer("promo-granted", [boolean("sso")])
    fake.set_customer("promo-revoked", [boolean("sso")])
    account.grant_promotions("promo-revoked", {"promotionalEntitlements": [{"featureId": "beta"}]})
    fake.set_customer("subscribed", [], access_denied_reason="NoActiveSubscription")
    fake.set_customer("newbie", [_calls(100, 0)])
    fake.set_customer("newbie-over", [_calls(5, 10)])
    fake.set_customer("probe", [boolean("sso")])


def _during(fake: FakeStigg) -> None:
    """What Stigg changes while the host cannot see it."""
    account = fake.account
    fake.set_customer("removed", [boolean("sso")])  # api_calls taken out of the plan
    fake.set_customer("ended", [], access_denied_reason="NoActiveSubscription")
    fake.set_customer("bool-removed", [])
    fake.set_customer("lowered", [_calls(40, 50)])
    fake.set_customer("lowered-mid", [_calls(3, 0)])
    fake.set_customer("made-soft", [_calls(10, 10, has_soft_limit=True)])
    fake.set_customer("raised", [_calls(20, 10)])
    account.set_usage("reset", "api_calls", 0)
    account.grant_promotions("promo-granted", {"promotionalEntitlements": [{"featureId": "beta"}]})
    account.revoke_promotion("promo-revoked", "beta")
    fake.set_customer("subscribed", [boolean("sso")])


# The offline checks, in order (customer, feature, method), and the usage reported among them.
OFFLINE: list[tuple[str, str, str]] = [
    ("removed", "api_calls", "get_metered_entitlement"),
    ("ended", "api_calls", "get_metered_entitlement"),
    ("unchanged", "api_calls", "get_metered_entitlement"),
    ("bool-removed", "sso", "get_boolean_entitlement"),
    ("lowered", "api_calls", "get_metered_entitlement"),
    *[("lowered-mid", "api_calls", "consume")] * 5,  # limit 10 lowered to 3: the 4th, 5th over
    ("soft", "api_calls", "get_metered_entitlement"),
    ("last-unit", "api_calls", "has_access"),
    ("reset", "api_calls", "get_metered_entitlement"),
    ("made-soft", "api_calls", "get_metered_entitlement"),
    ("raised", "api_calls", "get_metered_entitlement"),
    ("promo-granted", "beta", "get_boolean_entitlement"),
    ("promo-revoked", "beta", "get_boolean_entitlement"),
    ("subscribed", "sso", "get_boolean_entitlement"),
    ("newbie", "api_calls", "get_metered_entitlement"),  # never seen: the policy answers
    ("newbie-over", "api_calls", "get_metered_entitlement"),
]
# (customer, feature, offline answer): every contradiction, and nothing else.
CONTRADICTIONS = {
    ("removed", "api_calls", True),  # NoFeatureEntitlementInSubscription
    ("ended", "api_calls", True),  # NoActiveSubscription
    ("bool-removed", "sso", True),
    ("lowered", "api_calls", True),  # 50 used of 40
    ("lowered-mid", "api_calls", True),  # twice: the 4th and 5th units (3, then 4 used of 3)
    ("made-soft", "api_calls", False),  # a soft limit grants past it
    ("raised", "api_calls", False),
    ("reset", "api_calls", False),  # reset before the check: Stigg had 0 of 10
    ("promo-granted", "beta", False),
    ("promo-revoked", "beta", True),
    ("subscribed", "sso", False),
    ("newbie-over", "api_calls", True),  # the policy granted 10 used of 5
}
# Not contradicted: "unchanged"; "soft" (14 of 10, soft: Stigg grants); "last-unit" (granted
# with 9 of 10 used, the unit then used: Stigg counts 10 of 10 now, but granted it then);
# "newbie" (0 of 100).


class _Clock(ManualClock):
    """A manual clock whose wall time, while ``ticking``, moves on a millisecond each read:
    a consumption's usage is stamped before its check is answered, as on a real clock."""

    ticking = False

    def time(self) -> float:
        if self.ticking:
            self.jump_wall(0.001)
        return super().time()


async def _maybe(result: Any) -> Any:
    return await result if inspect.isawaitable(result) else result


async def _ask(client: Any, customer: str, feature: str, method: str) -> bool:
    if method == "has_access":
        return bool(await _maybe(client.has_access(customer, feature)))
    if method == "consume":
        return bool((await _maybe(client.consume(customer, feature))).granted)
    answer = await _maybe(getattr(client, method)(customer_id=customer, feature_id=feature))
    return bool(answer.has_access)


@contextmanager
def _time_passing(clock: _Clock) -> Iterator[None]:
    """The clock runs (10 clock seconds a real second) while reconciliation paces its reads."""
    stop = threading.Event()

    def tick() -> None:
        while not stop.wait(0.01):
            clock.advance(0.1)

    ticker = threading.Thread(target=tick, daemon=True)
    ticker.start()
    try:
        yield
    finally:
        stop.set()
        ticker.join()


async def _outage(client: Any, fake: FakeStigg, clock: _Clock) -> list[ReconcileReport]:
    reports: list[ReconcileReport] = []
    client.on_reconcile(reports.append)
    warm = {customer for customer, _, _ in OFFLINE if not customer.startswith("newbie")}
    for customer in sorted(warm):
        await _maybe(client.get_entitlements(customer_id=customer))
    fake.set_mode(FakeMode.DOWN)
    clock.advance(2)  # every snapshot stale
    await _ask(client, "probe", "sso", "get_boolean_entitlement")  # never seen: opens the breaker
    _during(fake)
    for customer, feature, method in OFFLINE:
        clock.advance(1)
        clock.ticking = method == "consume"
        await _ask(client, customer, feature, method)
        clock.ticking = False
        if customer == "last-unit":  # the unit it was granted, used and reported
            clock.advance(1)
            await _maybe(client.report_usage(customer_id=customer, feature_id=feature, value=1))
    fake.set_mode(FakeMode.UP)
    clock.advance(BACKOFF_S + 1)
    with _time_passing(clock):
        await _maybe(client.reconcile(timeout=60))
        checked = len(OFFLINE) + 1  # the probe's default answer too
        eventually(lambda: sum(r.decisions_checked for r in reports) == checked, within_s=60)
    return reports


def _options(tmp_path: Path, fake: FakeStigg, clock: _Clock) -> dict[str, Any]:
    return {
        "api_key": API_KEY,
        "base_url": fake.url,
        "store": f"sqlite:///{tmp_path}/cache.db",
        "policy": POLICY,
        "clock": clock,
        "check_timeout": 10.0,  # a loaded machine still fetches LIVE (DOWN refuses at once)
        "breaker": CircuitBreaker(
            failure_threshold=1, base_backoff_s=BACKOFF_S, max_backoff_s=BACKOFF_S
        ),
    }


def _threads(tmp_path: Path, fake: FakeStigg, clock: _Clock) -> list[ReconcileReport]:
    with ResilientClient(None, **_options(tmp_path, fake, clock)) as client:
        return asyncio.run(_outage(client, fake, clock))


def _event_loop(tmp_path: Path, fake: FakeStigg, clock: _Clock) -> list[ReconcileReport]:
    async def story() -> list[ReconcileReport]:
        async with AsyncResilientClient(None, **_options(tmp_path, fake, clock)) as client:
            return await _outage(client, fake, clock)

    return asyncio.run(story())


@pytest.mark.parametrize("client", [_threads, _event_loop], ids=["threads", "event-loop"])
def test_the_report_lists_exactly_the_contradictions_of_a_scripted_outage(
    client: Callable[[Path, FakeStigg, _Clock], list[ReconcileReport]],
    fake: FakeStigg,
    tmp_path: Path,
) -> None:
    _before(fake)
    reports = client(tmp_path, fake, _Clock())
    found = [c for report in reports for c in report.contradictions]
    listed = {(c.customer_id, c.feature_id, c.offline_has_access) for c in found}
    assert listed == CONTRADICTIONS, "\n".join(
        f"{c.customer_id}/{c.feature_id}: {c.explanation}" for c in found
    )
    counted: Counter[tuple[str, str, bool]] = Counter()
    for c in found:
        counted[c.customer_id, c.feature_id, c.offline_has_access] += c.count
    assert counted == {key: 2 if key[0] == "lowered-mid" else 1 for key in CONTRADICTIONS}
    explained = {c.customer_id: c.explanation for c in found}
    assert explained["removed"].endswith("NoFeatureEntitlementInSubscription")
    assert explained["ended"].endswith("NoActiveSubscription")
    assert "RequestedUsageExceedingLimit (50 of 40 used, 1 requested)" in explained["lowered"]
    assert sorted(c.explanation for c in found if c.customer_id == "lowered-mid") == [
        "granted offline, but Stigg would have denied it: RequestedUsageExceedingLimit"
        f" ({used} of 3 used, 1 requested)"
        for used in (3, 4)
    ]
    assert explained["reset"] == "denied offline, but Stigg would have granted it (0 of 10 used)"
