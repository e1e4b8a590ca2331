"""The vocabulary every layer shares: budgets, grants, and snapshots as a cache holds them.

These are data, with no behaviour that reaches anything: the policy is written
in budgets and grants, stores and the fetcher hand over :class:`CachedSnapshot`,
and the decision walk (:mod:`stigg_cache.core.walk`) reads all of them. They
live here, below all of those, so none of them reaches up to another.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol

import attrs

from stigg_cache.errors import StiggUnavailableError
from stigg_cache.models import Snapshot, Source

DEFAULT_FRESH_FOR_S = 60.0
DEFAULT_MAX_STALENESS_S = 24 * 3600.0

ScopeKey = tuple[str, str | None]
"""(customer id, resource id): what one snapshot answers for."""


@attrs.frozen
class Staleness:
    """How long a snapshot is fresh, and how long it may be served stale."""

    fresh_for_s: float = DEFAULT_FRESH_FOR_S
    max_staleness_s: float = DEFAULT_MAX_STALENESS_S


@attrs.frozen
class Grant:
    """What a fallback answers for one feature."""

    has_access: bool
    usage_limit: float | None = None
    value: float | None = None
    enum_values: tuple[str, ...] | None = None
    is_unlimited: bool = False


@attrs.frozen
class Resolution:
    """The fallback answer for one feature and where it came from."""

    grant: Grant
    source: Literal[Source.POLICY, Source.DEFAULT]
    rule: str | None


class Budgets(Protocol):
    """What the decision walk asks of a fallback policy (``FallbackPolicy`` is one)."""

    @property
    def version(self) -> str:
        """The policy's version, stamped on every decision."""

    @property
    def staleness(self) -> Staleness:
        """The global budget."""

    def staleness_for(self, feature_id: str) -> Staleness:
        """A feature's budget (its own, else the global one)."""

    def resolve(
        self,
        customer_id: str,
        resource_id: str | None,
        feature_id: str,
        plan_ids: tuple[str, ...] = (),
    ) -> Resolution:
        """The fallback answer for a feature when no trustworthy snapshot exists."""


class StiggHealth(Protocol):
    """What the fetcher and the flusher tell and ask about Stigg's health (the client's
    ``Health`` is one): whether a call may start, and how calls ended."""

    @property
    def answers(self) -> int:
        """Answers Stigg has given so far (a call notes it when it starts)."""

    @property
    def offline(self) -> bool:
        """Whether the breaker keeps requests from starting now."""

    @property
    def last_error(self) -> str | None:
        """Why Stigg last failed, if it has."""

    def allow(self) -> bool:
        """Whether a request to Stigg may start now."""

    def probe_in(self) -> float | None:
        """Seconds until a request may tell whether Stigg answers again (0: now);
        ``None``: nothing has failed, nothing to tell."""

    def succeeded(self) -> None:
        """Stigg answered."""

    def failed(
        self, error: StiggUnavailableError | TimeoutError, *, begun: int | None = None
    ) -> None:
        """A call failed; ignored if Stigg has answered since ``begun``."""


@attrs.define(eq=False)
class CachedSnapshot:
    """A snapshot with the monotonic time of its fetch, as L1 holds it.

    Treat the first four fields as read-only; the others are L1's bookkeeping.
    """

    snapshot: Snapshot
    fetched_mono: float
    dated_in_future: bool = False
    size: int = 0
    """Bytes of the snapshot's stored form."""
    held_bytes: int = attrs.field(default=0, repr=False)
    """What L1's byte budget counts for it: decoded, and its prepared answers."""
    referenced: bool = attrs.field(default=False, repr=False)
    """Asked for since L1's eviction sweep last passed it (set by every hit: one store)."""
    warm: dict[str, list[Any]] = attrs.field(factory=dict, repr=False)
    """Answers prepared for this snapshot by the client's fast path."""
