"""Every tier transition, through the official REST SDK over loopback HTTP."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from stigg_cache import (
    ConnectionState,
    FailureKind,
    FallbackPolicy,
    Grant,
    ResilientClient,
    Rule,
    Snapshot,
    Source,
    Staleness,
    StiggUnavailableError,
)
from stigg_cache.core import engine
from stigg_cache.testing import ManualClock, runtime_of
from stigg_cache.testing.fake import FakeMode, FakeStigg, boolean
from tests.conftest import MakeClient
from tests.forking import in_child
from tests.helpers import eventually


def test_cold_cache_is_answered_live_then_from_cache(
    fake: FakeStigg, make_client: MakeClient, clock: ManualClock
) -> None:
    client = make_client(clock=clock)
    first = client.get_boolean_entitlement(customer_id="acme", feature_id="sso")
    second = client.get_boolean_entitlement(customer_id="acme", feature_id="sso")
    assert (first.has_access, first.decision.source, first.decision.age_s) == (
        True,
        Source.LIVE,
        0.0,
    )
    assert (second.has_access, second.decision.source) == (True, Source.CACHE)
    assert fake.entitlement_requests() == 1


def test_every_getter_answers_with_stiggs_fields(make_client: MakeClient) -> None:
    client = make_client()
    metered = client.get_metered_entitlement(
        customer_id="acme", feature_id="api_calls", requested_usage=60
    )
    over = client.get_metered_entitlement(
        customer_id="acme", feature_id="api_calls", requested_usage=61
    )
    seats = client.get_numeric_entitlement(customer_id="acme", feature_id="seats")
    models = client.get_enum_entitlement(
        customer_id="acme", feature_id="models", requested_values=["claude"]
    )
    wrong = client.get_enum_entitlement(
        customer_id="acme", feature_id="models", requested_values=["llama"]
    )
    generic = client.get_entitlement(customer_id="acme", feature_id="api_calls")
    missing = client.get_boolean_entitlement(customer_id="acme", feature_id="nope")
    assert (metered.has_access, metered.current_usage, metered.usage_limit) == (True, 40, 100)
    assert metered.reset_period == "MONTH"
    assert metered.usage_period_end is not None
    assert (over.has_access, over.access_denied_reason) == (False, "RequestedUsageExceedingLimit")
    assert (seats.value, seats.is_unlimited) == (25, False)
    assert (models.has_access, models.enum_values) == (True, ("gpt-4", "claude"))
    assert (wrong.has_access, wrong.access_denied_reason) == (False, "RequestedValuesMismatch")
    assert (generic.feature_type, generic.current_usage) == ("NUMBER", 40)
    assert missing.access_denied_reason == "NoFeatureEntitlementInSubscription"
    assert client.has_access("acme", "sso")
    assert not client.has_access("acme", "api_calls", requested_usage=500)


def test_unknown_customer_is_denied_as_stigg_says(make_client: MakeClient) -> None:
    result = make_client().get_boolean_entitlement(customer_id="ghost", feature_id="sso")
    assert (result.has_access, result.access_denied_reason) == (False, "CustomerNotFound")
    assert result.decision.source is Source.LIVE


def test_expired_freshness_serves_stale_and_revalidates_in_background(
    fake: FakeStigg, make_client: MakeClient, clock: ManualClock
) -> None:
    client = make_client(clock=clock)
    client.get_boolean_entitlement(customer_id="acme", feature_id="sso")
    fake.set_customer("acme", [boolean("sso", granted=False)])
    clock.advance(61)
    stale = client.get_boolean_entitlement(customer_id="acme", feature_id="sso")
    assert (stale.decision.source, stale.decision.stale, stale.has_access) == (
        Source.STALE,
        True,
        True,
    )
    assert stale.decision.age_s == 61
    eventually(lambda: fake.entitlement_requests() == 2)
    eventually(
        lambda: (
            client.get_boolean_entitlement(customer_id="acme", feature_id="sso").decision.source
            is Source.CACHE
        )
    )
    assert not client.get_boolean_entitlement(customer_id="acme", feature_id="sso").has_access


def test_stale_snapshot_is_served_while_stigg_is_blackholed(
    fake: FakeStigg, make_client: MakeClient, clock: ManualClock
) -> None:
    client = make_client(clock=clock)
    client.get_boolean_entitlement(customer_id="acme", feature_id="sso")
    fake.set_mode(FakeMode.BLACKHOLE)
    clock.advance(600)
    for _ in range(5):
        result = client.get_boolean_entitlement(customer_id="acme", feature_id="sso")
        assert (result.decision.source, result.has_access) == (Source.STALE, True)
        assert result.decision.age_s == 600


def test_snapshot_past_max_staleness_falls_to_the_policy(
    fake: FakeStigg, make_client: MakeClient, clock: ManualClock
) -> None:
    policy = FallbackPolicy(
        staleness=Staleness(fresh_for_s=60, max_staleness_s=3600),
        rules=(Rule("enterprise", {"*": Grant(has_access=False)}, customers=("ac*",)),),
        version="v-test",
    )
    client = make_client(clock=clock, policy=policy, check_timeout=0.2)
    client.get_boolean_entitlement(customer_id="acme", feature_id="sso")
    fake.set_mode(FakeMode.DOWN)
    clock.advance(3601)
    result = client.get_boolean_entitlement(customer_id="acme", feature_id="sso")
    assert result.decision.source is Source.POLICY
    assert (result.decision.rule, result.decision.policy_version) == ("enterprise", "v-test")
    assert result.decision.age_s is None
    assert "max_staleness" in (result.decision.reason or "")
    assert not result.has_access
    assert result.is_fallback


def test_never_seen_customer_gets_the_default_while_stigg_is_down(
    fake: FakeStigg, make_client: MakeClient
) -> None:
    fake.set_mode(FakeMode.DOWN)
    result = make_client(check_timeout=0.3).get_metered_entitlement(
        customer_id="newcomer", feature_id="api_calls"
    )
    assert (result.decision.source, result.has_access, result.decision.rule) == (
        Source.DEFAULT,
        True,
        None,
    )


def test_per_feature_budget_overrides_the_global_one(
    fake: FakeStigg, make_client: MakeClient, clock: ManualClock
) -> None:
    from stigg_cache import FeaturePolicy

    policy = FallbackPolicy(
        staleness=Staleness(fresh_for_s=60, max_staleness_s=86_400),
        features={"api_calls": FeaturePolicy(max_staleness_s=7200)},
    )
    client = make_client(clock=clock, policy=policy, check_timeout=0.2)
    client.get_entitlements(customer_id="acme")
    fake.set_mode(FakeMode.DOWN)
    clock.advance(3 * 3600)
    sso = client.get_boolean_entitlement(customer_id="acme", feature_id="sso")
    calls = client.get_metered_entitlement(customer_id="acme", feature_id="api_calls")
    assert sso.decision.source is Source.STALE
    assert calls.decision.source is Source.DEFAULT


def test_valid_until_in_the_past_ends_freshness_early(
    fake: FakeStigg, make_client: MakeClient, clock: ManualClock
) -> None:
    soon = datetime.now(UTC) + timedelta(seconds=5)
    fake.set_customer("acme", [boolean("sso").__class__("sso", "BOOLEAN", True, valid_until=soon)])
    client = make_client(clock=clock)
    client.get_boolean_entitlement(customer_id="acme", feature_id="sso")
    fake.set_mode(FakeMode.DOWN)
    clock.advance(10)
    result = client.get_boolean_entitlement(customer_id="acme", feature_id="sso")
    assert (result.decision.source, result.decision.age_s) == (Source.STALE, 10)


def test_wall_clock_jump_does_not_make_cached_data_fresher(
    fake: FakeStigg, make_client: MakeClient, clock: ManualClock
) -> None:
    client = make_client(clock=clock)
    client.get_boolean_entitlement(customer_id="acme", feature_id="sso")
    fake.set_mode(FakeMode.DOWN)
    clock.advance(120)
    clock.jump_wall(-3600)
    result = client.get_boolean_entitlement(customer_id="acme", feature_id="sso")
    assert (result.decision.source, result.decision.age_s) == (Source.STALE, 120)


def test_stigg_back_brings_fresh_data_again(
    fake: FakeStigg, make_client: MakeClient, clock: ManualClock
) -> None:
    client = make_client(clock=clock, check_timeout=0.3)
    client.get_boolean_entitlement(customer_id="acme", feature_id="sso")
    fake.set_mode(FakeMode.DOWN)
    clock.advance(7200)
    for _ in range(3):
        fallback = client.get_boolean_entitlement(customer_id="acme", feature_id="sso")
        assert fallback.decision.source is Source.DEFAULT
    assert client.status().state is ConnectionState.OFFLINE
    fake.set_mode(FakeMode.UP)
    clock.advance(60)  # past the breaker's backoff: the next check is the probe
    live = client.get_boolean_entitlement(customer_id="acme", feature_id="sso")
    assert live.decision.source is Source.LIVE
    assert client.status().state is ConnectionState.CONNECTED


def test_get_entitlements_carries_its_decision(
    fake: FakeStigg, make_client: MakeClient, clock: ManualClock
) -> None:
    client = make_client(clock=clock, check_timeout=0.2)
    live = client.get_entitlements(customer_id="acme")
    assert live.decision is not None
    assert live.decision.source is Source.LIVE
    assert set(live.entitlements) == {"sso", "seats", "api_calls", "models"}
    fake.set_mode(FakeMode.DOWN)
    clock.advance(120)
    stale = client.get_entitlements(customer_id="acme")
    assert stale.decision is not None
    assert stale.decision.source is Source.STALE
    cold = client.get_entitlements(customer_id="nobody")
    assert cold.decision is not None
    assert (cold.decision.source, dict(cold.entitlements)) == (Source.DEFAULT, {})


class _PlanAwareAdapter:
    """A user-supplied adapter: anything with the Adapter interface can be wrapped."""

    name = "plan-aware"

    def __init__(self) -> None:
        self.up = True

    def fetch_entitlements(
        self, customer_id: str, resource_id: str | None, *, timeout_s: float
    ) -> Snapshot:
        if not self.up:
            raise StiggUnavailableError(FailureKind.CONNECTION, "down")
        return Snapshot(
            customer_id, resource_id, {"sso": boolean("sso")}, 0.0, plan_ids=("plan-pro",)
        )

    def report_events(self, events: object, *, timeout_s: float) -> None:
        raise StiggUnavailableError(FailureKind.CONNECTION, "read-only test adapter")

    report_usage = report_events

    def grant_promotional_entitlements(
        self, *args: object, **kwargs: object
    ) -> list[dict[str, object]]:
        raise StiggUnavailableError(FailureKind.CONNECTION, "read-only test adapter")

    def revoke_promotional_entitlement(self, *args: object, **kwargs: object) -> dict[str, object]:
        raise StiggUnavailableError(FailureKind.CONNECTION, "read-only test adapter")

    def close(self) -> None:
        pass


def test_expired_snapshot_still_lends_its_plan_to_policy_rules(clock: ManualClock) -> None:
    policy = FallbackPolicy(
        staleness=Staleness(fresh_for_s=60, max_staleness_s=3600),
        rules=(Rule("pro-keeps-sso", {"sso": Grant(has_access=True)}, plans=("plan-pro",)),),
        default=Grant(has_access=False),
    )
    adapter = _PlanAwareAdapter()
    with ResilientClient(adapter, store="memory://", policy=policy, clock=clock) as client:
        assert (
            client.get_boolean_entitlement(customer_id="c", feature_id="sso").decision.source
            is Source.LIVE
        )
        adapter.up = False
        clock.advance(7200)
        result = client.get_boolean_entitlement(customer_id="c", feature_id="sso")
        other = client.get_boolean_entitlement(customer_id="never-seen", feature_id="sso")
    assert (result.decision.source, result.decision.rule, result.has_access) == (
        Source.POLICY,
        "pro-keeps-sso",
        True,
    )
    assert (other.decision.source, other.has_access) == (Source.DEFAULT, False)


def test_stale_answers_alone_find_out_that_stigg_is_back(
    fake: FakeStigg, make_client: MakeClient, clock: ManualClock
) -> None:
    """No cold customer, no usage: only stale answers. They must probe once the backoff ends."""
    client = make_client(clock=clock)
    warm = client.get_boolean_entitlement(customer_id="acme", feature_id="sso")
    assert warm.decision.source is Source.LIVE
    fake.set_mode(FakeMode.DOWN)
    clock.advance(120)

    def stale_and_open() -> bool:
        answer = client.get_boolean_entitlement(customer_id="acme", feature_id="sso")
        assert answer.decision.source is Source.STALE
        return client.status().breaker == "open"

    eventually(stale_and_open)  # each stale answer's refresh fails until the breaker opens
    fake.set_mode(FakeMode.UP)
    clock.advance(60)  # past the backoff
    eventually(
        lambda: (
            client.get_boolean_entitlement(customer_id="acme", feature_id="sso").decision.source
            is Source.CACHE
        )
    )
    assert client.status().state is ConnectionState.CONNECTED


def test_a_validuntil_passed_on_arrival_refreshes_once_per_interval_not_per_check(
    fake: FakeStigg, make_client: MakeClient, clock: ManualClock
) -> None:
    past = datetime.now(UTC) - timedelta(minutes=5)
    fake.set_customer("acme", [boolean("sso").__class__("sso", "BOOLEAN", True, valid_until=past)])
    client = make_client(clock=clock)
    client.get_boolean_entitlement(customer_id="acme", feature_id="sso")  # LIVE: 1 fetch

    def checks() -> int:
        for _ in range(20):  # each used to start a refresh once the last one had landed
            result = client.get_boolean_entitlement(customer_id="acme", feature_id="sso")
            assert result.decision.source is Source.STALE
            time.sleep(0.02)
        return fake.entitlement_requests()

    assert in_child(checks) == 1  # a worker forked after the first fetch
    assert checks() == 1
    clock.advance(engine.MIN_REFRESH_S)  # once per interval: asked again
    client.get_boolean_entitlement(customer_id="acme", feature_id="sso")
    eventually(lambda: fake.entitlement_requests() == 2)


def test_stale_answers_while_stigg_answers_are_not_offline_decisions(
    fake: FakeStigg, make_client: MakeClient, clock: ManualClock
) -> None:
    # One latency blip used to make reconciliation re-read every recently active customer.
    client = make_client(clock=clock)
    for customer in ("acme", "globex"):
        fake.set_customer(customer, [boolean("sso")])
        client.get_boolean_entitlement(customer_id=customer, feature_id="sso")
    clock.advance(120)  # past fresh_for_s (60): stale, and refreshed in the background

    def stale_then_reconciled(customer: str) -> int:
        result = client.get_boolean_entitlement(customer_id=customer, feature_id="sso")
        assert result.decision.source is Source.STALE
        report = client.reconcile(timeout=2)
        assert report is not None
        return report.decisions_checked

    assert in_child(lambda: stale_then_reconciled("acme")) == 0
    assert stale_then_reconciled("globex") == 0


def test_a_wall_clock_step_back_never_makes_a_stored_snapshot_younger(
    fake: FakeStigg, make_client: MakeClient, clock: ManualClock
) -> None:
    client = make_client(clock=clock, check_timeout=0.2)  # max_staleness_s: 1 h
    client.get_boolean_entitlement(customer_id="acme", feature_id="sso")  # LIVE, stored
    fake.set_mode(FakeMode.DOWN)
    clock.advance(2 * 3600)  # two hours pass: the snapshot is past its budget
    clock.jump_wall(-2 * 3600)  # and the wall clock steps back over them

    def reloaded() -> list[object]:
        runtime_of(
            client
        ).parts.cache.clear_l1()  # read from the store again: its age from its wall time
        result = client.get_boolean_entitlement(customer_id="acme", feature_id="sso")
        return [result.decision.source.value, result.decision.age_s]

    assert in_child(reloaded) == ["DEFAULT", None]  # was CACHE at age 0.0
    assert reloaded() == ["DEFAULT", None]


def test_get_entitlements_answers_stale_at_once_and_refreshes_behind(
    fake: FakeStigg, make_client: MakeClient, clock: ManualClock
) -> None:
    # It used to wait for Stigg (LIVE after 454 ms) where a check answered STALE at once.
    client = make_client(clock=clock, check_timeout=2.0)
    client.get_entitlements(customer_id="acme")
    clock.advance(120)  # past fresh_for_s (60), within max_staleness_s
    fake.set_mode(FakeMode.SLOW, delay_s=0.5)

    def whole() -> str:
        decision = client.get_entitlements(customer_id="acme").decision
        assert decision is not None
        return decision.source.value

    assert in_child(whole) == "STALE"
    assert whole() == "STALE"
    eventually(lambda: fake.entitlement_requests() >= 2)  # refreshed behind the answer


def test_get_entitlements_judges_each_feature_by_its_own_budget_and_valid_until(
    fake: FakeStigg, make_client: MakeClient, clock: ManualClock
) -> None:
    from stigg_cache import FeaturePolicy

    soon = datetime.now(UTC) + timedelta(seconds=5)
    fake.set_customer(
        "acme",
        [boolean("sso"), boolean("audit").__class__("audit", "BOOLEAN", True, valid_until=soon)],
    )
    policy = FallbackPolicy(
        staleness=Staleness(fresh_for_s=60, max_staleness_s=86_400),
        features={"sso": FeaturePolicy(max_staleness_s=600)},
    )
    client = make_client(clock=clock, policy=policy, check_timeout=0.2)
    client.get_entitlements(customer_id="acme")
    fake.set_mode(FakeMode.DOWN)
    clock.advance(10)  # audit's validUntil has passed: no longer fresh
    early = client.get_entitlements(customer_id="acme")
    assert early.decision is not None
    assert early.decision.source is Source.STALE  # was CACHE: validUntil was not looked at
    clock.advance(1_200)  # past sso's own 10 minutes, within the day
    late = client.get_entitlements(customer_id="acme")
    assert late.decision is not None
    assert late.decision.source is Source.STALE
    assert "sso" not in late.entitlements  # was granted from data past its budget
    assert "audit" in late.entitlements
    single = client.get_boolean_entitlement(customer_id="acme", feature_id="sso")
    assert single.decision.source is not Source.STALE  # one walk: the check agrees
