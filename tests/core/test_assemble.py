"""The hot path's constructors make the very objects ``__init__`` makes, and refuse
classes whose ``__init__`` does more than set fields."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import attrs
import pytest

from stigg_cache.core.assemble import assembler
from stigg_cache.core.walk import CACHE_DECISION
from stigg_cache.models import (
    BooleanEntitlement,
    Decision,
    EnumEntitlement,
    MeteredEntitlement,
    NumericEntitlement,
    Source,
)

DECISION = Decision(Source.CACHE, 2.5, stale=False, policy_version="v1")
LEADING = {"customer_id": "acme", "feature_id": "seats", "resource_id": "site-1"}
RESULTS: list[tuple[type[Any], dict[str, Any]]] = [
    (BooleanEntitlement, {"has_access": True, "access_denied_reason": None}),
    (NumericEntitlement, {"has_access": True, "access_denied_reason": None, "value": 5.0,
                          "is_unlimited": False}),
    (MeteredEntitlement, {"has_access": False,
                          "access_denied_reason": "RequestedUsageExceedingLimit",
                          "usage_limit": 10.0, "current_usage": 9.0, "requested_usage": 2.0,
                          "is_unlimited": False, "has_soft_limit": True, "reset_period": "MONTH",
                          "usage_period_start": datetime(2026, 12, 1, tzinfo=UTC),
                          "usage_period_end": datetime(2027, 1, 1, tzinfo=UTC)}),
    (EnumEntitlement, {"has_access": True, "access_denied_reason": None,
                       "enum_values": ("eu", "us"), "requested_values": ("eu",)}),
]  # fmt: skip


@pytest.mark.parametrize(
    ("cls", "fields"), RESULTS, ids=lambda value: getattr(value, "__name__", "")
)
def test_an_assembled_result_is_the_object_init_makes(
    cls: type[Any], fields: dict[str, Any]
) -> None:
    expected = cls(**LEADING, **fields, decision=DECISION)
    make = assembler(cls, **LEADING, **fields)

    made = make(DECISION)

    assert type(made) is cls
    assert made == expected
    assert hash(made) == hash(expected)
    assert repr(made) == repr(expected)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        made.has_access = not made.has_access


def test_the_fields_not_bound_are_taken_in_field_order() -> None:
    bound: dict[str, Any] = {"customer_id": "acme", "feature_id": "calls", "resource_id": None,
             "usage_limit": 10.0, "is_unlimited": False}  # fmt: skip
    judged = assembler(MeteredEntitlement, **bound)

    made = judged(True, None, DECISION, 4.0, 1.0, False, None, None, None)

    assert made == MeteredEntitlement(
        **bound, has_access=True, access_denied_reason=None, decision=DECISION,
        current_usage=4.0, requested_usage=1.0,
    )  # fmt: skip


def test_the_cache_decision_is_dated_by_its_two_arguments() -> None:
    made = CACHE_DECISION(2.5, "v1")

    assert made == DECISION
    assert hash(made) == hash(DECISION)


def test_a_class_whose_init_does_more_than_set_its_fields_is_refused() -> None:
    @attrs.frozen
    class Checked:
        amount: int = attrs.field(validator=attrs.validators.ge(0))

    @attrs.frozen
    class Converted:
        amount: int = attrs.field(converter=int)

    @attrs.frozen
    class Finished:
        amount: int

        def __attrs_post_init__(self) -> None:
            pass

    @attrs.frozen(slots=False)
    class Unslotted:
        amount: int

    refused: list[tuple[type[Any], str]] = [
        (Checked, r"does more than set its fields: \['amount'\]"),
        (Converted, r"does more than set its fields: \['amount'\]"),
        (Finished, r"does more than set its fields: \['__attrs_post_init__'\]"),
        (Unslotted, "is not a slotted attrs class"),
    ]
    for cls, complaint in refused:
        with pytest.raises(TypeError, match=complaint):
            assembler(cls)


def test_an_unknown_field_is_named() -> None:
    with pytest.raises(TypeError, match=r"Decision has no field \['age'\]"):
        assembler(Decision, age=1.0)
