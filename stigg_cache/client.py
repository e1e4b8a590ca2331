"""ResilientClient: the only orchestrator.

Each check walks the tiers of DESIGN §3: a fresh snapshot (CACHE), else a
stale one within budget (STALE, refreshed in the background), else a fetch
within ``check_timeout`` (LIVE), else the fallback policy (POLICY / DEFAULT).
Decisions are made by the pure :mod:`stigg_cache.core.engine`; this module
only gathers inputs and does the I/O.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import Self

import attrs

from stigg_cache._clock import SYSTEM_CLOCK, Clock
from stigg_cache._fetcher import DEFAULT_FETCH_CONCURRENCY, Fetcher
from stigg_cache._health import Health, StateListener
from stigg_cache._log import FaultLog
from stigg_cache.adapters import adapt
from stigg_cache.core import engine
from stigg_cache.core.breaker import CircuitBreaker
from stigg_cache.core.engine import CheckKind, CheckRequest, Freshness
from stigg_cache.errors import ConfigurationError, StiggUnavailableError
from stigg_cache.models import (
    AnyEntitlement,
    BooleanEntitlement,
    Decision,
    Entitlement,
    EnumEntitlement,
    MeteredEntitlement,
    NumericEntitlement,
    Snapshot,
    Source,
    Status,
)
from stigg_cache.policy.model import BUILTIN_POLICY, FallbackPolicy
from stigg_cache.policy.watcher import PolicyWatcher
from stigg_cache.stores import Store, default_store_url, open_store
from stigg_cache.stores.layered import DEFAULT_L1_MAX_ENTRIES, CachedSnapshot, SnapshotCache

DEFAULT_CHECK_TIMEOUT_S = 0.5
DEFAULT_FETCH_TIMEOUT_S = 5.0  # a background fetch may outlive the check that started it


def _opt_id(name: str, value: object) -> str | None:
    return None if value is None else _id(name, value)


def _id(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, got {type(value).__name__}")
    if not value.strip():
        raise ValueError(f"{name} must be a non-empty string")
    return value


def _usage(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"requested_usage must be a number, got {type(value).__name__}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"requested_usage must be a finite number >= 0, got {value!r}")
    return float(value)


def _values(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise TypeError("requested_values must be a list of strings, e.g. ['gpt-4']")
    values = tuple(value)
    if not all(isinstance(v, str) for v in values):
        raise TypeError("requested_values must contain strings only")
    return values


def _positive(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigurationError(f"{name} must be a positive number of seconds, got {value!r}")
    return float(value)


class ResilientClient:
    """Wraps a Stigg client so entitlement checks keep answering when Stigg does not.

    Args:
        inner: a supported Stigg client (``stigg.Stigg``), an object with the
            :class:`~stigg_cache.adapters.Adapter` interface, or ``None`` for
            the built-in REST client (then pass ``api_key``).
        store: a store URL (``sqlite:///path.db``, ``disk:///dir``,
            ``memory://``, plugin schemes) or a :class:`Store`; default: SQLite
            in the user's cache directory.
        policy: a path to ``fallback.yaml`` (validated now, hot reloaded on
            every edit), a :class:`FallbackPolicy`, or ``None`` for the built-in
            one (allow, logged once a minute per feature).
        check_timeout: seconds a check may wait on the network, ever.
        fetch_timeout: seconds a fetch may run in the background before it
            is abandoned (it keeps filling the cache after the check moved on).
        clock: time source; tests inject a frozen clock.
    """

    def __init__(
        self,
        inner: object = None,
        *,
        store: str | Store | None = None,
        policy: FallbackPolicy | str | os.PathLike[str] | None = None,
        check_timeout: float = DEFAULT_CHECK_TIMEOUT_S,
        api_key: str | None = None,
        base_url: str | None = None,
        fetch_timeout: float = DEFAULT_FETCH_TIMEOUT_S,
        fetch_concurrency: int = DEFAULT_FETCH_CONCURRENCY,
        l1_max_entries: int = DEFAULT_L1_MAX_ENTRIES,
        breaker: CircuitBreaker | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._check_timeout_s = _positive("check_timeout", check_timeout)
        fetch_timeout_s = _positive("fetch_timeout", fetch_timeout)
        self._watcher: PolicyWatcher | None = None
        if isinstance(policy, str | os.PathLike):
            self._watcher = PolicyWatcher(policy, on_reload=self._use_policy)
            policy = self._watcher.current
        elif policy is not None and not isinstance(policy, FallbackPolicy):
            raise TypeError(
                f"policy must be a path, a FallbackPolicy or None, got {type(policy).__name__}"
            )
        self._policy = policy or BUILTIN_POLICY
        self._clock = clock
        self._faults = FaultLog(clock)
        self._adapter = adapt(
            inner, api_key=api_key, base_url=base_url, fetch_timeout_s=fetch_timeout_s
        )
        self._owns_store = not isinstance(store, Store)
        self._store_name, opened = self._open_store(store)
        self._health = Health(breaker or CircuitBreaker(), clock)
        self._cache = SnapshotCache(opened, clock, self._store_fault, l1_max_entries)
        self._fetcher = Fetcher(
            self._adapter,
            self._cache,
            self._health,
            clock,
            fetch_timeout_s=fetch_timeout_s,
            concurrency=fetch_concurrency,
        )
        self._closed = False

    @staticmethod
    def _open_store(store: str | Store | None) -> tuple[str, Store]:
        if store is None or isinstance(store, str | Path):
            url = default_store_url() if store is None else str(store)
            return url, open_store(url)
        if isinstance(store, Store):
            return repr(store), store
        raise TypeError(f"store must be a URL or a Store, got {type(store).__name__}")

    # -- checks ---------------------------------------------------------------

    def get_boolean_entitlement(
        self, *, customer_id: str, feature_id: str, resource_id: str | None = None
    ) -> BooleanEntitlement:
        """Whether a customer has a boolean feature."""
        return self._check(CheckKind.BOOLEAN, customer_id, feature_id, resource_id)

    def get_numeric_entitlement(
        self, *, customer_id: str, feature_id: str, resource_id: str | None = None
    ) -> NumericEntitlement:
        """A customer's configured number for a feature (``value``)."""
        return self._check(CheckKind.NUMERIC, customer_id, feature_id, resource_id)  # type: ignore[return-value]

    def get_metered_entitlement(
        self,
        *,
        customer_id: str,
        feature_id: str,
        requested_usage: float = engine.DEFAULT_REQUESTED_USAGE,
        resource_id: str | None = None,
    ) -> MeteredEntitlement:
        """Whether ``requested_usage`` more units fit within the customer's limit."""
        return self._check(  # type: ignore[return-value]
            CheckKind.METERED, customer_id, feature_id, resource_id, usage=requested_usage
        )

    def get_enum_entitlement(
        self,
        *,
        customer_id: str,
        feature_id: str,
        requested_values: Iterable[str] | None = None,
        resource_id: str | None = None,
    ) -> EnumEntitlement:
        """Whether every requested value is among the customer's enum values."""
        return self._check(  # type: ignore[return-value]
            CheckKind.ENUM, customer_id, feature_id, resource_id, values=requested_values
        )

    def get_entitlement(
        self,
        *,
        customer_id: str,
        feature_id: str,
        requested_usage: float | None = None,
        requested_values: Iterable[str] | None = None,
        resource_id: str | None = None,
    ) -> Entitlement:
        """Any feature, every field Stigg returns."""
        return self._check(  # type: ignore[return-value]
            CheckKind.GENERIC,
            customer_id,
            feature_id,
            resource_id,
            usage=requested_usage,
            values=requested_values,
        )

    def has_access(
        self,
        customer_id: str,
        feature_id: str,
        requested_usage: float | None = None,
        *,
        resource_id: str | None = None,
    ) -> bool:
        """Just the yes or no of :meth:`get_entitlement`."""
        return self._check(
            CheckKind.GENERIC, customer_id, feature_id, resource_id, usage=requested_usage
        ).has_access

    def get_entitlements(self, *, customer_id: str, resource_id: str | None = None) -> Snapshot:
        """Every entitlement of a customer, with the decision that produced them.

        With no trustworthy snapshot and Stigg unreachable, the result holds
        no entitlements and its decision says DEFAULT: individual checks then
        answer from the policy.
        """
        scope = (_id("customer_id", customer_id), _opt_id("resource_id", resource_id))
        budget = self._policy.staleness
        entry = self._cache.get(*scope)
        reason = None
        if entry is not None:
            age = self._clock.monotonic() - entry.fetched_mono
            freshness = engine.judge(
                age, budget, past_valid_until=False, dated_in_future=entry.dated_in_future
            )
            if freshness is Freshness.FRESH:
                return self._with_decision(entry, Source.CACHE, age)
        result = self._fetcher.fetch(scope, self._check_timeout_s)
        if isinstance(result, CachedSnapshot):
            return self._with_decision(result, Source.LIVE, 0.0)
        reason = str(result)
        if entry is not None:
            age = self._clock.monotonic() - entry.fetched_mono
            if age <= budget.max_staleness_s:
                return self._with_decision(entry, Source.STALE, age, reason)
        decision = Decision(
            Source.DEFAULT, None, stale=False, policy_version=self._policy.version, reason=reason
        )
        return Snapshot(scope[0], scope[1], {}, fetched_at=0.0, decision=decision)

    def _with_decision(
        self, entry: CachedSnapshot, source: Source, age: float, reason: str | None = None
    ) -> Snapshot:
        decision = Decision(
            source,
            age,
            stale=source is Source.STALE,
            policy_version=self._policy.version,
            reason=reason,
        )
        return attrs.evolve(entry.snapshot, decision=decision)

    def _check(
        self,
        kind: CheckKind,
        customer_id: object,
        feature_id: object,
        resource_id: object,
        *,
        usage: object = None,
        values: object = None,
    ) -> AnyEntitlement:
        request = CheckRequest(
            kind,
            _id("customer_id", customer_id),
            _id("feature_id", feature_id),
            _opt_id("resource_id", resource_id),
            _usage(usage),
            _values(values),
        )
        started = self._clock.monotonic()
        policy = self._policy
        budget = policy.staleness_for(request.feature_id)
        scope = (request.customer_id, request.resource_id)
        entry = self._cache.get(*scope)
        now_wall = self._clock.time()
        if entry is not None:
            age = started - entry.fetched_mono
            feature = entry.snapshot.entitlements.get(request.feature_id)
            freshness = engine.judge(
                age,
                budget,
                past_valid_until=engine.valid_until_passed(feature, now_wall),
                dated_in_future=entry.dated_in_future,
            )
            if freshness is Freshness.FRESH:
                decision = Decision(Source.CACHE, age, stale=False, policy_version=policy.version)
                return engine.from_snapshot(request, entry.snapshot, decision, now_wall=now_wall)
            if freshness is Freshness.STALE:
                if not self._health.offline:
                    self._fetcher.refresh(scope)
                decision = Decision(
                    Source.STALE,
                    age,
                    stale=True,
                    policy_version=policy.version,
                    reason=self._health.last_error if self._health.offline else None,
                )
                return engine.from_snapshot(request, entry.snapshot, decision, now_wall=now_wall)
        remaining = self._check_timeout_s - (self._clock.monotonic() - started)
        result = self._fetcher.fetch(scope, remaining)
        if isinstance(result, CachedSnapshot):
            decision = Decision(Source.LIVE, 0.0, stale=False, policy_version=policy.version)
            return engine.from_snapshot(
                request, result.snapshot, decision, now_wall=self._clock.time()
            )
        return self._fallback(request, policy, result, expired=entry)

    def _fallback(
        self,
        request: CheckRequest,
        policy: FallbackPolicy,
        error: StiggUnavailableError,
        *,
        expired: CachedSnapshot | None,
    ) -> AnyEntitlement:
        plans = () if expired is None else expired.snapshot.plan_ids
        resolution = policy.resolve(
            request.customer_id, request.resource_id, request.feature_id, plans
        )
        why = f"snapshot older than max_staleness; {error}" if expired else f"no snapshot; {error}"
        if resolution.rule is None:
            self._faults.report(
                "stigg_cache.default_allow",
                f"no policy entry for feature {request.feature_id!r}: allowing ({why})",
                key=request.feature_id,
            )
        decision = Decision(
            resolution.source,
            None,
            stale=False,
            rule=resolution.rule,
            policy_version=policy.version,
            reason=why,
        )
        return engine.from_grant(request, resolution.grant, decision)

    # -- operations -------------------------------------------------------------

    def status(self) -> Status:
        """A report of connection state, store, policy and counters."""
        health = self._health
        return Status(
            state=health.state,
            since=health.since,
            last_error=health.last_error,
            breaker=health.breaker_state.value,
            adapter=self._adapter.name,
            store=self._store_name,
            store_healthy=health.store_error is None,
            store_error=health.store_error,
            snapshots_held=self._cache.count(),
            snapshots_in_memory=self._cache.l1_size,
            policy_version=self._policy.version,
            policy_source=self._policy.source,
            policy_error=None if self._watcher is None else self._watcher.error,
            outbox_depth=0,
            dead_letters=0,
            faults=dict(self._faults.counts),
        )

    def on_status_change(self, callback: StateListener) -> Callable[[], None]:
        """Call ``callback(old_state, new_state)`` on each change; returns an unsubscribe."""
        return self._health.subscribe(callback)

    def close(self) -> None:
        """Stop background work and release what this client opened."""
        if self._closed:
            return
        self._closed = True
        self._fetcher.close()
        if self._watcher is not None:
            self._watcher.close()
        self._adapter.close()
        if self._owns_store:
            self._cache.store.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _use_policy(self, policy: FallbackPolicy) -> None:
        self._policy = policy  # one reference swap: checks in flight keep the old one

    def _store_fault(self, event: str, error: Exception | None) -> None:
        if error is None:
            self._health.store_fault(None)
            return
        self._faults.report(f"stigg_cache.{event}", str(error), key=event)
        if event != "store_entry_unusable":  # a bad entry is not a failing store
            self._health.store_fault(f"{event}: {error}")

    def __repr__(self) -> str:
        return f"ResilientClient(adapter={self._adapter.name!r}, store={self._store_name!r})"
