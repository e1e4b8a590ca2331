"""Local metering: offline usage counts against limits until Stigg reflects it."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import attrs
import pytest

from stigg_cache import (
    AsyncResilientClient,
    FallbackPolicy,
    FeatureEntitlement,
    Meter,
    ResilientClient,
    Source,
    Staleness,
    StiggUnavailableError,
)
from stigg_cache.core.breaker import CircuitBreaker
from stigg_cache.core.reconcile import ReconcileReport
from stigg_cache.outbox.sqlite import SqliteOutbox
from stigg_cache.testing import ManualClock
from stigg_cache.testing.account import FakeAccount
from stigg_cache.testing.fake import FakeMode, FakeStigg, boolean, metered
from tests.conftest import API_KEY, MakeClient
from tests.helpers import eventually

METERED_POLICY = FallbackPolicy(
    staleness=Staleness(fresh_for_s=60, max_staleness_s=3600),
    meters={"api_calls": Meter(event="api.request")},
)


def _calls(client: object, customer: str = "acme", requested: float = 1) -> object:
    return client.get_metered_entitlement(  # type: ignore[attr-defined]
        customer_id=customer, feature_id="api_calls", requested_usage=requested
    )


def test_customer_at_their_limit_is_denied_while_offline(
    fake: FakeStigg, make_client: MakeClient, clock: ManualClock
) -> None:
    fake.set_customer("acme", [metered("api_calls", limit=100, usage=90)])
    client = make_client(clock=clock, policy=METERED_POLICY)
    assert _calls(client).current_usage == 90  # type: ignore[attr-defined]
    fake.set_mode(FakeMode.DOWN)
    client.report_usage(customer_id="acme", feature_id="api_calls", value=5)
    five_more = _calls(client)
    assert (five_more.has_access, five_more.current_usage) == (True, 95)  # type: ignore[attr-defined]
    client.report_event([{"customer_id": "acme", "event_name": "api.request"}] * 5)
    clock.advance(120)  # stale now: still judged with local usage
    at_limit = _calls(client)
    assert at_limit.decision.source is Source.STALE  # type: ignore[attr-defined]
    assert (at_limit.has_access, at_limit.access_denied_reason, at_limit.current_usage) == (  # type: ignore[attr-defined]
        False,
        "RequestedUsageExceedingLimit",
        100,
    )
    client.report_usage(customer_id="acme", feature_id="api_calls", value=10, update_behavior="SET")
    after_set = _calls(client)
    assert (after_set.has_access, after_set.current_usage) == (True, 10)  # type: ignore[attr-defined]


def test_offline_usage_counts_against_a_policy_fallback_limit(
    fake: FakeStigg, make_client: MakeClient
) -> None:
    policy = FallbackPolicy.from_yaml(
        "version: 1\nfeatures:\n  api_calls: {fallback: {has_access: true, usage_limit: 3}}\n"
    )
    fake.set_mode(FakeMode.DOWN)
    client = make_client(policy=policy, check_timeout=0.1)
    client.report_usage(customer_id="cold", feature_id="api_calls", value=3)
    result = _calls(client, customer="cold")
    assert result.decision.source is Source.DEFAULT  # type: ignore[attr-defined]
    assert (result.has_access, result.current_usage) == (False, 3)  # type: ignore[attr-defined]


def test_usage_rolls_to_zero_when_the_period_ends_offline(
    fake: FakeStigg, make_client: MakeClient, clock: ManualClock
) -> None:
    end = datetime.fromtimestamp(clock.time(), UTC) + timedelta(seconds=60)
    fake.set_customer("acme", [metered("api_calls", limit=100, usage=100, period_end=end)])
    client = make_client(clock=clock)
    assert not _calls(client).has_access  # type: ignore[attr-defined]
    fake.set_mode(FakeMode.DOWN)
    client.report_usage(customer_id="acme", feature_id="api_calls", value=50)  # old period
    clock.advance(120)
    rolled = _calls(client)
    assert (rolled.decision.source, rolled.has_access, rolled.current_usage) == (  # type: ignore[attr-defined]
        Source.STALE,
        True,
        0,
    )
    client.report_usage(customer_id="acme", feature_id="api_calls", value=30)  # new period
    assert _calls(client).current_usage == 30  # type: ignore[attr-defined]


def test_acknowledged_usage_counts_until_a_settled_snapshot_includes_it(
    make_client: MakeClient,
) -> None:
    account = FakeAccount(aggregation_delay_s=0.5)
    with FakeStigg(api_key=API_KEY, account=account) as fake:
        fake.set_customer("acme", [metered("api_calls", limit=100, usage=40)])
        policy = FallbackPolicy(staleness=Staleness(fresh_for_s=0.2, max_staleness_s=3600))
        client = make_client(
            inner=None, api_key=API_KEY, base_url=fake.url, policy=policy, settle_s=1.5
        )
        assert _calls(client).current_usage == 40  # type: ignore[attr-defined]
        client.report_usage(customer_id="acme", feature_id="api_calls", value=5)
        assert client.flush(timeout=10).drained
        time.sleep(0.3)
        _calls(client)  # stale: starts a refresh
        eventually(lambda: fake.entitlement_requests() >= 2)
        # Stigg has it but has not aggregated it yet: we must not forget it.
        assert _calls(client).current_usage >= 45  # type: ignore[attr-defined]
        time.sleep(1.8)  # past the settle window and Stigg's aggregation
        _calls(client)
        eventually(lambda: _calls(client).decision.source is Source.CACHE)  # type: ignore[attr-defined]
        assert account.usage_of("acme", "api_calls") == 45
        assert _calls(client).current_usage == 45  # type: ignore[attr-defined]  # not 50


def test_reconcile_reports_offline_decisions_fresh_data_contradicts(
    make_client: MakeClient,
) -> None:
    with FakeStigg(api_key=API_KEY) as fake:
        fake.set_customer("acme", [boolean("sso"), metered("api_calls", limit=100, usage=40)])
        fake.set_customer("newbie", [metered("api_calls", limit=5, usage=10)])
        breaker = CircuitBreaker(failure_threshold=1, base_backoff_s=0.2, max_backoff_s=0.2)
        client = make_client(
            inner=None, api_key=API_KEY, base_url=fake.url, check_timeout=0.2, breaker=breaker
        )
        reports: list[ReconcileReport] = []
        client.on_reconcile(reports.append)
        client.get_boolean_entitlement(customer_id="acme", feature_id="sso")
        fake.set_mode(FakeMode.DOWN)
        offline_grant = _calls(client, customer="newbie")  # never seen: the default allows
        ghost = client.get_boolean_entitlement(customer_id="ghost", feature_id="sso")
        client.report_usage(customer_id="acme", feature_id="api_calls", value=7)
        assert offline_grant.has_access  # type: ignore[attr-defined]
        assert ghost.has_access
        fake.set_mode(FakeMode.UP)
        time.sleep(0.3)
        client.get_boolean_entitlement(
            customer_id="probe", feature_id="sso"
        )  # breaker probe succeeds
        eventually(lambda: bool(reports))
    report = reports[0]
    assert report.outbox_drained
    assert report.decisions_checked == 2
    assert report.customers_refreshed >= 3  # newbie, ghost and acme (it reported usage offline)
    explained = {(c.customer_id, c.feature_id): c.explanation for c in report.contradictions}
    assert (
        "RequestedUsageExceedingLimit (10 of 5 used, 1 requested)"
        in explained[("newbie", "api_calls")]
    )
    assert "CustomerNotFound" in explained[("ghost", "sso")]
    assert report.granted_but_denied == 2


def test_closing_stops_a_reconciliation_under_way_before_its_outbox_closes(
    make_client: MakeClient,
) -> None:
    with FakeStigg(api_key=API_KEY) as fake:
        fake.set_customer("acme", [boolean("sso")])
        breaker = CircuitBreaker(failure_threshold=1, base_backoff_s=0.2, max_backoff_s=0.2)
        client = make_client(
            inner=None, api_key=API_KEY, base_url=fake.url, check_timeout=0.2, breaker=breaker
        )
        client.get_boolean_entitlement(customer_id="acme", feature_id="sso")
        fake.set_mode(FakeMode.DOWN)
        client.report_event([{"customer_id": "acme", "event_name": "e"}])
        fake.set_mode(FakeMode.SLOW, delay_s=2.0)  # back, slowly: the send takes 2 s
        time.sleep(0.3)
        client.get_boolean_entitlement(customer_id="probe", feature_id="sso")  # reconnects
        eventually(lambda: bool(_reconciling()))
        time.sleep(1.2)  # past its jittered pause: its flush waits on the 2 s send
        client.close()  # the outbox closes under it: before, its flush raised in the thread
        assert not [thread for thread in _reconciling() if thread.is_alive()]


def test_an_outbox_failing_under_a_reconciliation_is_a_counted_fault_not_a_dead_thread(
    make_client: MakeClient, tmp_path: Path
) -> None:
    outbox = SqliteOutbox(tmp_path / "theirs.db")  # the user's: they may close it under us
    with FakeStigg(api_key=API_KEY) as fake:
        breaker = CircuitBreaker(failure_threshold=1, base_backoff_s=0.2, max_backoff_s=0.2)
        client = make_client(
            inner=None,
            api_key=API_KEY,
            base_url=fake.url,
            check_timeout=0.2,
            breaker=breaker,
            outbox=outbox,
        )
        client.get_boolean_entitlement(customer_id="acme", feature_id="sso")
        fake.set_mode(FakeMode.DOWN)
        client.get_boolean_entitlement(customer_id="ghost", feature_id="sso")  # offline
        client.report_event([{"customer_id": "acme", "event_name": "e"}])
        outbox.close()
        fake.set_mode(FakeMode.UP)
        time.sleep(0.3)
        client.get_boolean_entitlement(customer_id="probe", feature_id="sso")  # reconnects
        eventually(lambda: client.status().faults.get("stigg_cache.reconcile_failed") == 1)
        assert client.status().outbox_error is not None


def _reconciling() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "stigg-cache-reconcile"]


def test_promotional_grant_and_revoke_invalidate_the_cached_snapshot(
    fake: FakeStigg, make_client: MakeClient
) -> None:
    client = make_client()
    assert not client.get_boolean_entitlement(customer_id="acme", feature_id="reports").has_access
    granted = client.grant_promotional_entitlements(
        "acme", [{"feature_id": "reports", "period": "1 month"}]
    )
    assert granted[0]["featureId"] == "reports"
    now = client.get_boolean_entitlement(customer_id="acme", feature_id="reports")
    assert (now.has_access, now.decision.source) == (True, Source.LIVE)
    client.revoke_promotional_entitlement("acme", "reports")
    assert not client.get_boolean_entitlement(customer_id="acme", feature_id="reports").has_access
    fake.set_mode(FakeMode.DOWN)
    with pytest.raises(StiggUnavailableError):
        client.grant_promotional_entitlements(
            "acme", [{"feature_id": "reports", "period": "1 month"}]
        )


def _denied_over_the_limit(end: datetime) -> FeatureEntitlement:
    """A metered feature Stigg denied for its usage: 100 of 100 used, until ``end``."""
    used_up = metered("api_calls", limit=100, usage=100, period_end=end)
    return attrs.evolve(
        used_up, is_granted=False, access_denied_reason="RequestedUsageExceedingLimit"
    )


@pytest.mark.parametrize("asynchronous", [False, True], ids=["threads", "event-loop"])
def test_a_denial_over_the_limit_ends_with_its_period_offline(
    fake: FakeStigg, tmp_path: Path, clock: ManualClock, asynchronous: bool
) -> None:
    """Stigg's denial for usage is about the period it counted: once that period ends
    (offline), the new one starts at 0 and is judged on usage; a denial for another reason
    (the feature revoked) still stands."""
    end = datetime.fromtimestamp(clock.time(), UTC) + timedelta(seconds=60)
    revoked = attrs.evolve(boolean("sso"), is_granted=False, access_denied_reason="Revoked")
    fake.set_customer("acme", [_denied_over_the_limit(end), revoked])
    options: dict[str, Any] = {
        "store": f"sqlite:///{tmp_path}/c.db",
        "policy": METERED_POLICY,
        "clock": clock,
        "check_timeout": 1.0,
    }

    async def answers() -> list[tuple[Any, ...]]:
        checks: tuple[tuple[str, dict[str, Any]], ...] = (
            ("api_calls", {"requested_usage": 1}),
            ("sso", {}),
        )
        if asynchronous:
            client: Any = AsyncResilientClient(None, api_key=API_KEY, base_url=fake.url, **options)
        else:
            client = ResilientClient(None, api_key=API_KEY, base_url=fake.url, **options)
        seen: list[tuple[Any, ...]] = []
        try:
            for moment in ("live", "rolled"):
                if moment == "rolled":
                    fake.set_mode(FakeMode.DOWN)
                    clock.advance(120)  # past usagePeriodEnd, Stigg out of reach
                for feature, extra in checks:
                    getter = client.get_metered_entitlement if extra else client.get_entitlement
                    answer = getter(customer_id="acme", feature_id=feature, **extra)
                    answer = await answer if asynchronous else answer
                    seen.append(
                        (answer.decision.source, answer.has_access, answer.access_denied_reason)
                    )
        finally:
            await client.aclose() if asynchronous else client.close()
        return seen

    assert asyncio.run(answers()) == [
        (Source.LIVE, False, "RequestedUsageExceedingLimit"),
        (Source.CACHE, False, "Revoked"),
        (Source.STALE, True, None),  # a new period: 0 of 100 used
        (Source.STALE, False, "Revoked"),
    ]
