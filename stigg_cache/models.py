"""Data returned to callers: entitlement results, snapshots and decisions.

Every result carries a :class:`Decision` saying which tier answered, how old
its data was and which policy rule (if any) made it. Field names follow
Stigg's own (``has_access``, ``usage_limit``, ``current_usage`` ...).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import datetime
from typing import Literal, get_args

import attrs

AccessDeniedReason = Literal[
    "BudgetExceeded",
    "CustomerIsArchived",
    "CustomerNotFound",
    "CustomerResourceNotFound",
    "EntitlementNotFound",
    "FeatureNotFound",
    "FeatureTypeMismatch",
    "InsufficientCredits",
    "NoActiveSubscription",
    "NoFeatureEntitlementInSubscription",
    "RequestedUsageExceedingLimit",
    "RequestedValuesMismatch",
    "Revoked",
    "Unknown",
]
ACCESS_DENIED_REASONS: frozenset[str] = frozenset(get_args(AccessDeniedReason))
FeatureType = Literal["BOOLEAN", "NUMBER", "ENUM"]
FEATURE_TYPES: frozenset[str] = frozenset(get_args(FeatureType))
ResetPeriod = Literal["YEAR", "MONTH", "WEEK", "DAY", "HOUR"]
RESET_PERIODS: frozenset[str] = frozenset(get_args(ResetPeriod))


class Source(enum.Enum):
    """The tier that answered a check, freshest first."""

    LIVE = "LIVE"
    CACHE = "CACHE"
    STALE = "STALE"
    POLICY = "POLICY"
    DEFAULT = "DEFAULT"


@attrs.frozen
class Decision:
    """Provenance of one answer.

    Attributes:
        source: the tier that answered.
        age_s: seconds since the snapshot behind the answer was fetched from
            Stigg; ``None`` when no snapshot was used (POLICY, DEFAULT).
        stale: the answer rests on data older than its freshness budget.
        rule: the policy rule that answered, for POLICY and DEFAULT.
        policy_version: content hash of the policy in force.
        reason: why a fresher tier could not answer, if one could not.
    """

    source: Source
    age_s: float | None
    stale: bool
    rule: str | None = None
    policy_version: str | None = None
    reason: str | None = None


@attrs.frozen
class FeatureEntitlement:
    """One feature entitlement as Stigg computed it, stored in a snapshot."""

    feature_id: str
    feature_type: FeatureType | None
    is_granted: bool
    access_denied_reason: AccessDeniedReason | None = None
    usage_limit: float | None = None
    current_usage: float | None = None
    has_unlimited_usage: bool = False
    has_soft_limit: bool = False
    reset_period: ResetPeriod | None = None
    usage_period_anchor: datetime | None = None
    usage_period_start: datetime | None = None
    usage_period_end: datetime | None = None
    valid_until: datetime | None = None
    entitlement_updated_at: datetime | None = None
    enum_values: tuple[str, ...] | None = None
    display_name: str | None = None


@attrs.frozen
class CreditEntitlement:
    """A credit (currency) entitlement as Stigg computed it."""

    currency_id: str
    is_granted: bool
    access_denied_reason: AccessDeniedReason | None = None
    usage_limit: float = 0.0
    current_usage: float = 0.0
    usage_period_end: datetime | None = None
    valid_until: datetime | None = None
    display_name: str | None = None


@attrs.frozen
class Snapshot:
    """The effective entitlements of one customer (or one of its resources).

    Attributes:
        fetched_at: wall-clock time (epoch seconds) at which Stigg answered;
            persisted so ages survive restarts.
        plan_ids: the customer's plans, where the adapter knows them; policy
            rules can match them once the snapshot is too old to answer.
        decision: provenance when returned by ``get_entitlements``; ``None``
            on snapshots held in stores.
    """

    customer_id: str
    resource_id: str | None
    entitlements: Mapping[str, FeatureEntitlement]
    fetched_at: float
    access_denied_reason: AccessDeniedReason | None = None
    credits: Mapping[str, CreditEntitlement] = attrs.field(factory=dict)
    plan_ids: tuple[str, ...] = ()
    decision: Decision | None = attrs.field(default=None, eq=False)


@attrs.frozen
class BooleanEntitlement:
    """Answer to ``get_boolean_entitlement``.

    Every result starts with these six fields, in this order; kinds add theirs after.
    """

    customer_id: str
    feature_id: str
    resource_id: str | None
    has_access: bool
    access_denied_reason: AccessDeniedReason | None
    decision: Decision

    @property
    def is_fallback(self) -> bool:
        """True when no Stigg data stood behind the answer (Stigg's own term)."""
        return self.decision.source in (Source.POLICY, Source.DEFAULT)


@attrs.frozen
class NumericEntitlement(BooleanEntitlement):
    """Answer to ``get_numeric_entitlement``: a configured number."""

    value: float | None
    is_unlimited: bool


@attrs.frozen
class MeteredEntitlement(BooleanEntitlement):
    """Answer to ``get_metered_entitlement``."""

    usage_limit: float | None
    current_usage: float
    requested_usage: float
    is_unlimited: bool
    has_soft_limit: bool = False
    reset_period: ResetPeriod | None = None
    usage_period_start: datetime | None = None
    usage_period_end: datetime | None = None

    @property
    def has_unlimited_usage(self) -> bool:
        """Stigg's REST name for ``is_unlimited``."""
        return self.is_unlimited


@attrs.frozen
class EnumEntitlement(BooleanEntitlement):
    """Answer to ``get_enum_entitlement``."""

    enum_values: tuple[str, ...]
    requested_values: tuple[str, ...]


@attrs.frozen
class Entitlement(BooleanEntitlement):
    """Answer to the generic ``get_entitlement``: every field Stigg returns."""

    feature_type: FeatureType | None
    usage_limit: float | None = None
    current_usage: float | None = None
    requested_usage: float | None = None
    is_unlimited: bool = False
    has_soft_limit: bool = False
    reset_period: ResetPeriod | None = None
    usage_period_start: datetime | None = None
    usage_period_end: datetime | None = None
    enum_values: tuple[str, ...] | None = None
    requested_values: tuple[str, ...] | None = None
    valid_until: datetime | None = None


AnyEntitlement = (
    BooleanEntitlement | NumericEntitlement | MeteredEntitlement | EnumEntitlement | Entitlement
)


class ConnectionState(enum.Enum):
    """How stigg-cache sees Stigg right now.

    CONNECTED: Stigg answers. DEGRADED: some calls fail, or a probe is under
    way, or Stigg refuses the API key (``Status.auth_error`` says so). OFFLINE:
    the breaker is open; checks are answered from cache and policy without
    waiting on the network.
    """

    CONNECTED = "CONNECTED"
    DEGRADED = "DEGRADED"
    OFFLINE = "OFFLINE"


@attrs.frozen
class Status:
    """A point-in-time report of the client's health (``ResilientClient.status()``).

    Attributes:
        since: wall-clock time at which ``state`` was entered.
        outbox_depth / outbox_oldest_at: records waiting for Stigg, and the
            stamp (wall time) of the oldest.
        outbox_error: why usage is not where it normally waits, or why the
            outbox cannot be read (e.g. a fleet outbox fell back to a local file).
        signing: how snapshots are signed (``None``: not signed).
        tamper_detections: snapshots that failed their signature since start.
        faults: count of each fault event since start (e.g. ``fetch_failed``).
        snapshots_held: snapshots in the store as last counted: counting walks every
            key, so ``status()`` has it done in the background at most once a minute
            (``None`` until the first count; ``stigg-cache inspect`` counts now).
        auth_error: Stigg refuses the API key (401/403): what it said. Sending is
            paused with backoff, every record kept; ``None`` once it accepts again.
        sending_resumes_at: wall time before which the outbox sends nothing (Stigg's
            ``Retry-After``, a backoff, a pause); ``None`` when it may send now.
        namespace: the environment the client's default store and outbox belong to
            (``namespace=``, else its base URL and a digest of its API key).
        pacing: set while this process paces its sending off the fleet's shared budget,
            saying at what share (a Redis outbox's bucket unreachable: the account's rate
            over the processes last seen); ``None`` on the shared budget, or alone by design.
    """

    state: ConnectionState
    since: float
    last_error: str | None
    breaker: str
    adapter: str
    store: str
    store_healthy: bool
    store_error: str | None
    snapshots_held: int | None
    snapshots_in_memory: int
    policy_version: str
    policy_source: str | None
    policy_error: str | None
    outbox_depth: int
    outbox_oldest_at: float | None
    dead_letters: int
    faults: Mapping[str, int]
    outbox_error: str | None = None
    signing: str | None = None
    tamper_detections: int = 0
    auth_error: str | None = None
    sending_resumes_at: float | None = None
    namespace: str | None = None
    pacing: str | None = None
