"""A caller's bad input is the caller's error: precise, and never held against Stigg (#15)."""

from __future__ import annotations

import asyncio
import sqlite3
import tracemalloc
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from stigg_cache import AsyncResilientClient, InvalidValueError, ResilientClient, Source
from stigg_cache.core.engine import CheckKind
from stigg_cache.core.reconcile import DEFAULT_JOURNAL_CHARS
from stigg_cache.core.validate import MAX_ID_CHARS, MAX_REQUESTED_VALUES, check_request
from stigg_cache.testing import runtime_of
from stigg_cache.testing.fake import FakeMode, FakeStigg
from tests.conftest import API_KEY
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


MANY = 10_000
BIG_VALUE = "v" * 1_000_000


@pytest.mark.parametrize(
    ("values", "said"),
    [
        (["gpt-4"] * MANY, "requested_values holds more than"),
        ([f"model-{n}" for n in range(MANY)], "requested_values holds more than"),
        (["gpt-4", BIG_VALUE], r"requested_values\[1\] must be a non-empty string"),
        (["", "gpt-4"], r"requested_values\[0\] must be a non-empty string"),
        (["gpt-4", SURROGATE], r"requested_values\[1\] is not valid Unicode"),
    ],
    ids=["10,000 alike", "10,000 distinct", "1 MB", "empty", "lone surrogate"],
)
def test_requested_values_are_bounded_like_ids_naming_the_argument(
    fake: FakeStigg, tmp_path: Path, values: list[str], said: str
) -> None:
    """Sync and async checks alike: a precise InvalidValueError, and nothing held."""
    with client_on(fake, tmp_path) as client:
        with pytest.raises(InvalidValueError, match=said):
            client.get_enum_entitlement(
                customer_id="acme", feature_id="models", requested_values=values
            )
        assert client.status().breaker == "closed"

    async def on_a_loop() -> None:
        async with AsyncResilientClient(
            None, api_key=API_KEY, base_url=fake.url, store=f"sqlite:///{tmp_path}/async.db"
        ) as client:
            with pytest.raises(InvalidValueError, match=said):
                await client.get_entitlement(
                    customer_id="acme", feature_id="models", requested_values=values
                )

    asyncio.run(on_a_loop())


def test_alike_requested_values_count_once() -> None:
    request = check_request(CheckKind.ENUM, "acme", "models", None, values=["a", "b", "a"])
    assert request.requested_values == ("a", "b")


@pytest.mark.parametrize("outbox_busy", [False, True], ids=["outbox-free", "outbox-busy"])
def test_offline_enum_checks_hold_no_more_than_the_journal_bound_whatever_they_ask(
    fake: FakeStigg, tmp_path: Path, outbox_busy: bool
) -> None:
    """Each check asks for as many values, as long, as it may, all distinct: held for the
    whole outage (for the reconciliation report), they stay within the journal's bound,
    those on their way to the host's journal (the outbox) included: ``outbox_busy``, a
    sibling holds its write lock while the checks are made, so they wait there."""
    checks = 2 * DEFAULT_JOURNAL_CHARS // (MAX_REQUESTED_VALUES * MAX_ID_CHARS)
    with (
        client_on(fake, tmp_path) as client,
        closing(sqlite3.connect(tmp_path / "cache-outbox.db", isolation_level=None)) as sibling,
    ):
        fake.set_mode(FakeMode.DOWN)
        client.get_boolean_entitlement(customer_id="acme", feature_id="sso")  # warm the paths
        if outbox_busy:
            sibling.execute("BEGIN IMMEDIATE")
        tracemalloc.start()
        try:
            held_before = tracemalloc.get_traced_memory()[0]
            for n in range(checks):
                values = [
                    f"{n:04}-{v:03}".ljust(MAX_ID_CHARS, "x") for v in range(MAX_REQUESTED_VALUES)
                ]
                client.get_enum_entitlement(
                    customer_id=f"cold-{n % 7}", feature_id="models", requested_values=values
                )
            held = tracemalloc.get_traced_memory()[0] - held_before
        finally:
            tracemalloc.stop()
            if outbox_busy:
                sibling.execute("COMMIT")
        asked = checks * MAX_REQUESTED_VALUES * MAX_ID_CHARS
        assert held < 1.25 * DEFAULT_JOURNAL_CHARS < asked, f"{held / 2**20:.1f} MiB held"
        decisions, dropped = runtime_of(client).walker.journal.take()
        assert len(decisions) + dropped == checks + 1  # and the first: covered or counted
        assert dropped > 0
