"""The warm fast path answers exactly as the full path does, and steps aside when it must."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import attrs
import pytest

from stigg_cache import FallbackPolicy, Source, Staleness
from stigg_cache._engine.fastpath import KIND_OF
from stigg_cache.client import surface
from stigg_cache.core.engine import CheckKind
from stigg_cache.models import AnyEntitlement, FeatureEntitlement
from stigg_cache.testing import ManualClock, runtime_of
from stigg_cache.testing.fake import FakeMode, FakeStigg, boolean, enum_feature, metered, numeric
from tests.conftest import MakeClient

FEATURES = [
    boolean("on"),
    boolean("off", granted=False),
    numeric("seats", 25),
    numeric("unlimited_seats", None, unlimited=True),
    metered("calls", limit=100, usage=99),
    metered("unlimited_calls", limit=None, usage=5000, unlimited=True),
    enum_feature("models", ["a", "b"]),
    FeatureEntitlement(
        "soft", "NUMBER", True, usage_limit=10, current_usage=50, has_soft_limit=True
    ),
]
KINDS = [CheckKind.BOOLEAN, CheckKind.NUMERIC, CheckKind.METERED, CheckKind.GENERIC]


def _without_age(result: AnyEntitlement) -> AnyEntitlement:
    return attrs.evolve(result, decision=attrs.evolve(result.decision, age_s=0.0))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("requested", [None, 1, 2])
def test_fast_and_full_paths_agree_on_every_feature(
    fake: FakeStigg,
    make_client: MakeClient,
    clock: ManualClock,
    kind: CheckKind,
    requested: int | None,
) -> None:
    fake.set_customer("acme", FEATURES)
    client = make_client(clock=clock)
    client.get_entitlements(customer_id="acme")
    client.report_usage(customer_id="acme", feature_id="calls", value=0.5)  # local usage in play
    for feature in [f.feature_id for f in FEATURES] + ["absent"]:
        amount = requested if kind in (CheckKind.METERED, CheckKind.GENERIC) else None
        # A memo of the walk's CACHE answer, not a walk of its own: none before the walk's
        assert surface(client).checks.fast(KIND_OF[kind], "acme", feature, None, amount) is None
        full = surface(client).checks.ask(KIND_OF[kind], "acme", feature, None, amount)
        fast = surface(client).checks.fast(KIND_OF[kind], "acme", feature, None, amount)
        assert fast is not None
        assert fast.decision.source is Source.CACHE
        assert _without_age(fast) == _without_age(full), feature


def test_fast_path_steps_aside_for_stale_data_and_bad_arguments(
    fake: FakeStigg, make_client: MakeClient, clock: ManualClock
) -> None:
    client = make_client(clock=clock)
    client.get_entitlements(customer_id="acme")
    client.get_boolean_entitlement(customer_id="acme", feature_id="sso")  # the walk's, kept
    client.get_metered_entitlement(customer_id="acme", feature_id="api_calls")
    assert surface(client).checks.fast(KIND_OF[CheckKind.BOOLEAN], "acme", "sso", None) is not None
    assert (
        surface(client).checks.fast(KIND_OF[CheckKind.METERED], "acme", "api_calls", None, 2)
        is not None
    )
    for args in [(5, "sso", None), ("acme", "", None), ("acme", "  ", None), ("acme", "sso", 7)]:
        assert surface(client).checks.fast(KIND_OF[CheckKind.BOOLEAN], *args) is None
    assert (
        surface(client).checks.fast(
            KIND_OF[CheckKind.METERED], "acme", "api_calls", None, float("nan")
        )
        is None
    )
    assert (
        surface(client).checks.fast(KIND_OF[CheckKind.METERED], "acme", "api_calls", None, -1)
        is None
    )
    fake.set_mode(FakeMode.DOWN)
    clock.advance(61)
    assert surface(client).checks.fast(KIND_OF[CheckKind.BOOLEAN], "acme", "sso", None) is None
    assert (
        client.get_boolean_entitlement(customer_id="acme", feature_id="sso").decision.source
        is Source.STALE
    )


def test_fast_path_honours_valid_until_and_period_end(
    fake: FakeStigg, make_client: MakeClient, clock: ManualClock
) -> None:
    soon = datetime.fromtimestamp(clock.time(), UTC) + timedelta(seconds=10)
    fake.set_customer(
        "acme",
        [
            FeatureEntitlement("sso", "BOOLEAN", True, valid_until=soon),
            metered("calls", limit=10, usage=10, period_end=soon + timedelta(seconds=10)),
        ],
    )
    client = make_client(clock=clock)
    client.get_entitlements(customer_id="acme")
    client.get_boolean_entitlement(customer_id="acme", feature_id="sso")  # the walk's, kept
    client.get_metered_entitlement(customer_id="acme", feature_id="calls")
    assert surface(client).checks.fast(KIND_OF[CheckKind.BOOLEAN], "acme", "sso", None) is not None
    assert (
        surface(client).checks.fast(KIND_OF[CheckKind.METERED], "acme", "calls", None) is not None
    )
    clock.advance(11)
    assert (
        surface(client).checks.fast(KIND_OF[CheckKind.BOOLEAN], "acme", "sso", None) is None
    )  # past validUntil
    assert (
        surface(client).checks.fast(KIND_OF[CheckKind.METERED], "acme", "calls", None) is not None
    )
    clock.advance(10)
    assert (
        surface(client).checks.fast(KIND_OF[CheckKind.METERED], "acme", "calls", None) is None
    )  # the period rolled over
    rolled = client.get_metered_entitlement(customer_id="acme", feature_id="calls")
    assert (rolled.has_access, rolled.current_usage) == (True, 0)


def test_a_policy_reload_re_prepares_answers(
    fake: FakeStigg, make_client: MakeClient, clock: ManualClock
) -> None:
    client = make_client(clock=clock)
    client.get_entitlements(customer_id="acme")
    before = client.get_boolean_entitlement(customer_id="acme", feature_id="sso")
    runtime_of(client).parts.policy.use(
        FallbackPolicy(staleness=Staleness(fresh_for_s=1), version="v2")
    )
    clock.advance(2)
    assert (
        surface(client).checks.fast(KIND_OF[CheckKind.BOOLEAN], "acme", "sso", None) is None
    )  # the new budget applies
    assert before.decision.policy_version != "v2"
