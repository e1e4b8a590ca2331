"""Checks of the caller's arguments: precise TypeError / ValueError messages."""

from __future__ import annotations

import math
from collections.abc import Iterable

from stigg_cache.core.engine import CheckKind, CheckRequest
from stigg_cache.core.walk import EveryFeature
from stigg_cache.errors import ConfigurationError, InvalidTypeError, InvalidValueError

MAX_ID_CHARS = 1_000  # ids of customers, resources, features, events, idempotency keys
MAX_REQUESTED_VALUES = 100  # an enum feature has a handful of values; each is like an id
_PATH_STEPS = frozenset({".", ".."})


def opt_id(name: str, value: object) -> str | None:
    """An optional id: ``None`` or a non-empty string."""
    return None if value is None else require_id(name, value)


def require_id(name: str, value: object) -> str:
    """A non-empty string of at most ``MAX_ID_CHARS`` characters, valid Unicode.

    A longer id would make a URL no server takes (and fill caches and journals);
    a lone surrogate cannot be encoded for the wire or the store.
    """
    if (
        type(value) is str
        and value.isascii()
        and len(value) <= MAX_ID_CHARS
        and value.strip()
        and value not in _PATH_STEPS
    ):
        return value  # the common case, checked first
    if not isinstance(value, str):
        raise InvalidTypeError(f"{name} must be a str, got {type(value).__name__}")
    if value in _PATH_STEPS:  # in a URL path they would name another resource
        raise InvalidValueError(
            f"{name} {value!r} is not an id: it would rewrite the request's path"
        )
    if not value.strip() or len(value) > MAX_ID_CHARS:
        raise InvalidValueError(
            f"{name} must be a non-empty string of at most {MAX_ID_CHARS} characters"
        )
    return encodable(name, value)


def encodable(name: str, value: str) -> str:
    """``value`` if it can be encoded as UTF-8 (for the wire and the stores)."""
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidValueError(
                f"{name} is not valid Unicode (a lone surrogate, e.g. from a bad decode): "
                f"{value!r:.80}"
            ) from None
    return value


def finite_number(name: str, value: object) -> float:
    """A finite number as a float (an int too large for a float is not one)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidTypeError(f"{name} must be a number, got {type(value).__name__}")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise InvalidValueError(f"{name} must be a finite number, got {value!r:.40}")
    return number


def requested_usage(value: object) -> float | None:
    """``None`` or a finite number >= 0."""
    if value is None:
        return None
    number = finite_number("requested_usage", value)
    if number < 0:
        raise InvalidValueError(f"requested_usage must be a finite number >= 0, got {value!r}")
    return number


def amount(value: object) -> float:
    """A finite number > 0 (units to consume)."""
    number = finite_number("amount", value)
    if number <= 0:
        raise InvalidValueError(f"amount must be a finite number > 0, got {value!r}")
    return number


def requested_values(value: object) -> tuple[str, ...]:
    """A list of at most ``MAX_REQUESTED_VALUES`` strings (not a bare string), each a
    non-empty string of at most ``MAX_ID_CHARS`` characters, alike values once.

    Offline checks are journaled, values included, for the whole outage: unbounded,
    200 checks of one 1 MB value each held 191 MiB.
    """
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise InvalidTypeError("requested_values must be a list of strings, e.g. ['gpt-4']")
    values: dict[str, None] = {}
    for index, item in enumerate(value):
        if index == MAX_REQUESTED_VALUES:
            raise InvalidValueError(
                f"requested_values holds more than {MAX_REQUESTED_VALUES} values: "
                f"ask about at most {MAX_REQUESTED_VALUES} at a time"
            )
        name = f"requested_values[{index}]"
        if not isinstance(item, str):
            raise InvalidTypeError(f"{name} must be a str, got {type(item).__name__}")
        if not item.strip() or len(item) > MAX_ID_CHARS:
            raise InvalidValueError(
                f"{name} must be a non-empty string of at most {MAX_ID_CHARS} characters"
            )
        values[encodable(name, item)] = None
    return tuple(values)


def positive_seconds(name: str, value: float) -> float:
    """A positive number of seconds (a configuration value)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigurationError(f"{name} must be a positive number of seconds, got {value!r}")
    return float(value)


def positive_int(name: str, value: int) -> int:
    """A positive whole number (a configuration value)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"{name} must be a positive whole number, got {value!r}")
    return value


def check_request(  # noqa: PLR0917 - a check's own arguments, in their order
    kind: CheckKind,
    customer_id: object,
    feature_id: object,
    resource_id: object,
    usage: object = None,
    values: object = None,
) -> CheckRequest:
    """A check's arguments, validated (a precise error names the one to change)."""
    return CheckRequest(
        kind,
        require_id("customer_id", customer_id),
        require_id("feature_id", feature_id),
        opt_id("resource_id", resource_id),
        requested_usage(usage),
        requested_values(values),
    )


def every_feature(customer_id: object, resource_id: object) -> EveryFeature:
    """``get_entitlements``' arguments, validated."""
    return EveryFeature(require_id("customer_id", customer_id), opt_id("resource_id", resource_id))
