"""stigg-cache: Stigg entitlement checks that keep answering when Stigg does not."""

from stigg_cache._engine.checks import DecisionHook
from stigg_cache._support.clock import SYSTEM_CLOCK, Clock
from stigg_cache.adapters.base import Adapter
from stigg_cache.aio import AsyncResilientClient
from stigg_cache.client import ResilientClient
from stigg_cache.core.breaker import BreakerState, CircuitBreaker
from stigg_cache.core.reconcile import Contradiction, ReconcileReport
from stigg_cache.environment import environment_token
from stigg_cache.errors import (
    ClientClosedError,
    ConfigurationError,
    CorruptEntryError,
    FailureKind,
    InvalidArgumentError,
    InvalidResponseError,
    InvalidTypeError,
    InvalidValueError,
    OutboxFullError,
    PolicyError,
    StiggCacheError,
    StiggRejectedError,
    StiggUnavailableError,
    StoreError,
    StoreNotFoundError,
    TamperedEntryError,
)
from stigg_cache.models import (
    BooleanEntitlement,
    ConnectionState,
    CreditEntitlement,
    Decision,
    Entitlement,
    EnumEntitlement,
    FeatureEntitlement,
    MeteredEntitlement,
    NumericEntitlement,
    Snapshot,
    Source,
    Status,
)
from stigg_cache.outbox.base import DeadLetter, Outbox, OutboxStats
from stigg_cache.outbox.flusher import FlushResult
from stigg_cache.outbox.records import Consumption, Receipt, RecordKind
from stigg_cache.policy import FallbackPolicy, FeaturePolicy, Grant, Meter, Rule, Staleness
from stigg_cache.stores import MISSING, Store, open_store

__all__ = [
    "MISSING",
    "SYSTEM_CLOCK",
    "Adapter",
    "AsyncResilientClient",
    "BooleanEntitlement",
    "BreakerState",
    "CircuitBreaker",
    "ClientClosedError",
    "Clock",
    "ConfigurationError",
    "ConnectionState",
    "Consumption",
    "Contradiction",
    "CorruptEntryError",
    "CreditEntitlement",
    "DeadLetter",
    "Decision",
    "DecisionHook",
    "Entitlement",
    "EnumEntitlement",
    "FailureKind",
    "FallbackPolicy",
    "FeatureEntitlement",
    "FeaturePolicy",
    "FlushResult",
    "Grant",
    "InvalidArgumentError",
    "InvalidResponseError",
    "InvalidTypeError",
    "InvalidValueError",
    "Meter",
    "MeteredEntitlement",
    "NumericEntitlement",
    "Outbox",
    "OutboxFullError",
    "OutboxStats",
    "PolicyError",
    "Receipt",
    "ReconcileReport",
    "RecordKind",
    "ResilientClient",
    "Rule",
    "Snapshot",
    "Source",
    "Staleness",
    "Status",
    "StiggCacheError",
    "StiggRejectedError",
    "StiggUnavailableError",
    "Store",
    "StoreError",
    "StoreNotFoundError",
    "TamperedEntryError",
    "environment_token",
    "open_store",
]
