"""A caller's bad input is the caller's error: precise, and never held against Stigg (#15)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from stigg_cache import ResilientClient, Source
from stigg_cache.testing.fake import FakeStigg
from tests.helpers import client_on

LONG_ID = "c" * 100_000
SURROGATE = "acme\udc80"


@pytest.fixture
def client(fake: FakeStigg, tmp_path: Path) -> Any:
    with client_on(fake, tmp_path) as made:
        yield made


@pytest.mark.parametrize("argument", ["customer_id", "feature_id", "resource_id"])
@pytest.mark.parametrize("bad", [LONG_ID, SURROGATE], ids=["100 KB", "lone surrogate"])
def test_an_id_a_request_cannot_carry_is_refused_naming_the_argument(
    client: ResilientClient, argument: str, bad: str
) -> None:
    ids: dict[str, Any] = {"customer_id": "acme", "feature_id": "sso", "resource_id": None}
    ids[argument] = bad
    with pytest.raises(ValueError, match=argument):
        client.get_boolean_entitlement(**ids)


def test_a_long_id_opens_no_breaker_and_costs_no_other_customer_its_answer(
    client: ResilientClient, fake: FakeStigg
) -> None:
    for _ in range(5):
        with pytest.raises(ValueError, match="customer_id"):
            client.get_boolean_entitlement(customer_id=LONG_ID, feature_id="sso")
    answer = client.get_boolean_entitlement(customer_id="acme", feature_id="sso")
    assert (answer.has_access, answer.decision.source) == (True, Source.LIVE)
    assert client.status().breaker == "closed"


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.get_metered_entitlement(
            customer_id="acme", feature_id="api_calls", requested_usage=10**400
        ),
        lambda c: c.consume("acme", "api_calls", 10**400),
        lambda c: c.report_usage(customer_id="acme", feature_id="api_calls", value=10**400),
        lambda c: c.report_event(
            [{"customer_id": "acme", "event_name": "x", "dimensions": {"tokens": 10**400}}]
        ),
        lambda c: c.report_usage(customer_id=SURROGATE, feature_id="api_calls", value=1),
        lambda c: c.report_event(
            [{"customer_id": "acme", "event_name": "x", "dimensions": {"plan": SURROGATE}}]
        ),
    ],
    ids=["requested_usage", "amount", "value", "dimension number", "usage id", "dimension text"],
)
def test_numbers_and_text_no_wire_can_carry_are_a_value_error(
    client: ResilientClient, call: Any
) -> None:
    with pytest.raises(ValueError):
        call(client)
    assert client.status().outbox_depth == 0


@pytest.mark.parametrize("dots", [".", ".."])
@pytest.mark.parametrize(
    "call",
    [
        lambda c, d: c.get_boolean_entitlement(customer_id=d, feature_id="sso"),
        lambda c, d: c.get_boolean_entitlement(customer_id="acme", feature_id="sso", resource_id=d),
        lambda c, d: c.revoke_promotional_entitlement("acme", d),
        lambda c, d: c.report_usage(customer_id=d, feature_id="api_calls", value=1),
    ],
    ids=["customer", "resource", "revoked feature", "usage customer"],
)
def test_dot_ids_that_would_rewrite_a_request_path_are_refused(
    client: ResilientClient, fake: FakeStigg, call: Any, dots: str
) -> None:
    asked = len(fake.log)
    with pytest.raises(ValueError, match="rewrite the request's path"):
        call(client, dots)
    assert len(fake.log) == asked  # nothing reached Stigg
