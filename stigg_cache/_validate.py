"""Checks of the caller's arguments: precise TypeError / ValueError messages."""

from __future__ import annotations

import math
from collections.abc import Iterable

from stigg_cache.errors import ConfigurationError


def opt_id(name: str, value: object) -> str | None:
    """An optional id: ``None`` or a non-empty string."""
    return None if value is None else require_id(name, value)


def require_id(name: str, value: object) -> str:
    """A non-empty string id."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, got {type(value).__name__}")
    if not value.strip():
        raise ValueError(f"{name} must be a non-empty string")
    return value


def requested_usage(value: object) -> float | None:
    """``None`` or a finite number >= 0."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"requested_usage must be a number, got {type(value).__name__}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"requested_usage must be a finite number >= 0, got {value!r}")
    return float(value)


def amount(value: object) -> float:
    """A finite number > 0 (units to consume)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"amount must be a number, got {type(value).__name__}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"amount must be a finite number > 0, got {value!r}")
    return float(value)


def requested_values(value: object) -> tuple[str, ...]:
    """A list of strings (not a bare string)."""
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise TypeError("requested_values must be a list of strings, e.g. ['gpt-4']")
    values = tuple(value)
    if not all(isinstance(v, str) for v in values):
        raise TypeError("requested_values must contain strings only")
    return values


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
