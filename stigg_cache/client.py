"""ResilientClient: the public face — checks, usage, status and lifecycle.

Each check walks the tiers of DESIGN §3: a fresh snapshot (CACHE), else a
stale one within budget (STALE, refreshed in the background), else a fetch
within ``check_timeout`` (LIVE), else the fallback policy (POLICY / DEFAULT).
The walk is :mod:`stigg_cache.core.walk` (pure: it makes every decision); its
I/O is :mod:`stigg_cache._engine.walk`'s, and what a client is made of is built and
wired in :mod:`stigg_cache._runtime`. Warm checks are answered by the fast path,
a memo of the walk's CACHE answers. Usage goes through a durable outbox.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, Self

import attrs

from stigg_cache._engine.breaker import StateListener
from stigg_cache._engine.checks import Checks, DecisionHook
from stigg_cache._engine.fastpath import BOOLEAN, ENUM, GENERIC, METERED, NUMERIC
from stigg_cache._engine.reconcile import ReportListener
from stigg_cache._engine.walk import Walker
from stigg_cache._runtime import (
    DEFAULT_CHECK_TIMEOUT_S,
    DEFAULT_FETCH_CONCURRENCY,
    DEFAULT_FETCH_TIMEOUT_S,
    DEFAULT_L1_MAX_BYTES,
    DEFAULT_L1_MAX_ENTRIES,
    DEFAULT_LEASE_S,
    DEFAULT_OUTBOX_MAX_RECORDS,
    DEFAULT_SETTLE_S,
    EVENTS_PER_SECOND,
    RECONCILE_TIMEOUT_S,
    USAGE_CALLS_PER_MINUTE,
    Options,
    Runtime,
)
from stigg_cache._support.clock import SYSTEM_CLOCK, Clock
from stigg_cache._support.dropped import when_dropped
from stigg_cache.core import engine
from stigg_cache.core import validate as check
from stigg_cache.core.breaker import CircuitBreaker
from stigg_cache.core.engine import CheckKind
from stigg_cache.core.reconcile import ReconcileReport
from stigg_cache.errors import InvalidTypeError
from stigg_cache.models import (
    BooleanEntitlement,
    Entitlement,
    EnumEntitlement,
    MeteredEntitlement,
    NumericEntitlement,
    Snapshot,
    Status,
)
from stigg_cache.outbox.admin import OutboxAdmin
from stigg_cache.outbox.base import Outbox
from stigg_cache.outbox.flusher import FlushResult
from stigg_cache.outbox.records import (
    Consumption,
    Receipt,
    UpdateBehavior,
    UsageRecord,
    event_records,
    usage_record,
    usage_records,
)
from stigg_cache.policy.model import FallbackPolicy
from stigg_cache.policy.watcher import PolicyWatcher
from stigg_cache.stores import Store
from stigg_cache.stores.layered import SnapshotCache


class ResilientClient:
    """Wraps a Stigg client so entitlement checks keep answering when Stigg does not.

    Args:
        inner: a Stigg client: ``stigg.Stigg`` / ``AsyncStigg`` (REST), the
            ``StiggClient`` of ``stigg-api-client`` (GraphQL v1), ``StiggClient``
            / ``AsyncStiggClient`` of ``stigg-api-client-v2``,
            ``stigg_sidecar_sdk.Stigg``; an object with the
            :class:`~stigg_cache.adapters.Adapter` (or ``AsyncAdapter``)
            interface; or ``None`` for the built-in REST client (then pass
            ``api_key``). Asyncio clients run on a private loop thread here;
            :class:`~stigg_cache.AsyncResilientClient` runs them on yours.
        store: a store URL (``sqlite:////var/lib/app/stigg-cache.db``, ``disk:////dir``,
            ``memory://``, plugin schemes) or a :class:`Store`; default: SQLite
            in the user's cache directory.
        policy: a path to ``fallback.yaml`` (validated now, hot reloaded on
            every edit), a :class:`FallbackPolicy`, or ``None`` for the built-in
            one (allow, logged once a minute per feature).
        check_timeout: seconds a check may wait on the network, ever.
        outbox: where usage waits for Stigg: ``sqlite:////path/outbox.db``, ``memory://``
            (not durable) or an :class:`Outbox`; default: next to the store.
        fetch_timeout: seconds a fetch may run in the background before it
            is abandoned (it keeps filling the cache after the check moved on).
        settle_s: how long after Stigg acknowledges usage a fresh snapshot is
            assumed not to include it yet (Stigg aggregates asynchronously).
        events_per_second: this process's share of Stigg's event rate limit.
        usage_calls_per_minute: this process's share of Stigg's bulk-usage call limit.
        reads_per_minute: the read budget fetches are paced to, for every process
            sharing the outbox (a Redis outbox: the fleet); default: the endpoint's
            (Stigg's Edge API: 6,000 a minute per key), none for the others. A 429
            on a read pauses reads (for its Retry-After, or on our own backoff).
            Reconciliation's refreshes take at most half of it (default: of 6,000).
        fetch_concurrency: fetches a check waits for, at once, per process.
            Refreshes nobody waits for (ahead of staleness, reconciliation) run
            on slots of their own, so they never keep a check from asking Stigg.
        outbox_max_records: the most records the outbox may hold; usage calls
            beyond it raise :class:`OutboxFullError` (never silently dropped).
        l1_max_entries: the most snapshots the in-memory cache holds.
        l1_max_bytes: the most memory the in-memory cache holds (decoded snapshots
            and prepared answers).
        store_max_bytes: about the most a file store holds (SQLite, disk): the least
            recently used snapshots go first (SQLite: written or read; disk:
            written); default: a tenth of the disk's free
            space at start-up, between 64 MiB and 10 GiB. Snapshots older than the
            policy's longest ``max_staleness`` are swept away in any case.
        signing_key: HMAC-SHA256 key(s) for tamper-evident snapshots (the
            first signs, all verify); default ``STIGG_CACHE_SIGNING_KEY``
            (comma-separated). A snapshot that fails verification is a miss.
        namespace: the environment this client's default store and outbox belong to
            (letters, digits, ``.``, ``_``, ``-``); default: a name made of the base URL and
            a digest of the API key (:func:`~stigg_cache.environment_token`), so staging and
            production never share snapshots or usage.
        clock: time source; tests inject a manual clock.
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
        outbox: str | Outbox | None = None,
        fetch_timeout: float = DEFAULT_FETCH_TIMEOUT_S,
        fetch_concurrency: int = DEFAULT_FETCH_CONCURRENCY,
        l1_max_entries: int = DEFAULT_L1_MAX_ENTRIES,
        l1_max_bytes: int = DEFAULT_L1_MAX_BYTES,
        store_max_bytes: int | None = None,
        settle_s: float = DEFAULT_SETTLE_S,
        events_per_second: float = EVENTS_PER_SECOND,
        usage_calls_per_minute: float = USAGE_CALLS_PER_MINUTE,
        reads_per_minute: float | None = None,
        outbox_lease_s: float = DEFAULT_LEASE_S,
        outbox_max_records: int = DEFAULT_OUTBOX_MAX_RECORDS,
        breaker: CircuitBreaker | None = None,
        signing_key: str | bytes | Sequence[str | bytes] | None = None,
        namespace: str | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        given = dict(locals())  # the arguments by name: Options has a field for each
        del given["self"], given["inner"]
        self._runtime = runtime = Runtime(inner, Options(**given))
        self._checks = runtime.checks
        self.outbox = OutboxAdmin(runtime.parts.outbox, clock)
        self._dropped = when_dropped(self, repr(self), runtime.close)

    # -- checks ---------------------------------------------------------------

    def get_boolean_entitlement(
        self, *, customer_id: str, feature_id: str, resource_id: str | None = None
    ) -> BooleanEntitlement:
        """Whether a customer has a boolean feature."""
        warm = self._checks.fast(BOOLEAN, customer_id, feature_id, resource_id)
        if warm is not None:
            return warm
        return self._checks.ask(BOOLEAN, customer_id, feature_id, resource_id)

    def get_numeric_entitlement(
        self, *, customer_id: str, feature_id: str, resource_id: str | None = None
    ) -> NumericEntitlement:
        """A customer's configured number for a feature (``value``)."""
        warm = self._checks.fast(NUMERIC, customer_id, feature_id, resource_id)
        if warm is not None:
            return warm
        return self._checks.ask(NUMERIC, customer_id, feature_id, resource_id)

    def get_metered_entitlement(
        self,
        *,
        customer_id: str,
        feature_id: str,
        requested_usage: float = engine.DEFAULT_REQUESTED_USAGE,
        resource_id: str | None = None,
    ) -> MeteredEntitlement:
        """Whether ``requested_usage`` more units fit, counting usage Stigg has not seen yet."""
        warm = self._checks.fast(METERED, customer_id, feature_id, resource_id, requested_usage)
        if warm is not None:
            return warm
        return self._checks.ask(METERED, customer_id, feature_id, resource_id, requested_usage)

    def get_enum_entitlement(
        self,
        *,
        customer_id: str,
        feature_id: str,
        requested_values: Iterable[str] | None = None,
        resource_id: str | None = None,
    ) -> EnumEntitlement:
        """Whether every requested value is among the customer's enum values."""
        return self._checks.ask(ENUM, customer_id, feature_id, resource_id, None, requested_values)

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
        return self._checks.ask(
            GENERIC, customer_id, feature_id, resource_id, requested_usage, requested_values
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
        warm = self._checks.fast(GENERIC, customer_id, feature_id, resource_id, requested_usage)
        if warm is not None:
            return warm.has_access
        return self._checks.ask(
            GENERIC, customer_id, feature_id, resource_id, requested_usage
        ).has_access

    def get_entitlements(self, *, customer_id: str, resource_id: str | None = None) -> Snapshot:
        """Every entitlement of a customer, with the decision that produced them.

        Judged as a check of each feature would be (its own budget, its
        ``validUntil``): CACHE while all are fresh; STALE at once (refreshed in
        the background) while none is past its ``max_staleness``; else Stigg is
        asked within the check budget, and failing that a STALE answer holds only
        the features still within their budget. With no usable snapshot and Stigg
        unreachable, the result holds no entitlements and its decision says
        DEFAULT: individual checks then answer from the policy.
        """
        answer = self._runtime.walker.walked(check.every_feature(customer_id, resource_id))[0]
        assert isinstance(answer, Snapshot)
        return answer

    # -- usage ---------------------------------------------------------------------

    def report_event(self, events: Sequence[Mapping[str, Any]]) -> list[Receipt]:
        """Buffer raw events durably; returns one receipt each once they are on disk.

        Each event: ``customer_id``, ``event_name``, ``idempotency_key``
        (generated if missing), optional ``dimensions``, ``resource_id``,
        ``timestamp`` (aware datetime or ISO-8601; now if missing). Nothing is
        enqueued if any event is invalid. Never touches the network.
        """
        return self._enqueue(events, event_records, "report_event takes events=[{...}, ...]")

    def report_usage(
        self,
        *,
        customer_id: str,
        feature_id: str,
        value: float,
        update_behavior: UpdateBehavior = "DELTA",
        idempotency_key: str | None = None,
        resource_id: str | None = None,
        dimensions: Mapping[str, str | float | bool] | None = None,
        created_at: datetime | None = None,
    ) -> Receipt:
        """Buffer one usage measurement durably (``DELTA`` adds, ``SET`` replaces)."""
        usage = {
            "customer_id": customer_id, "feature_id": feature_id, "value": value,
            "update_behavior": update_behavior, "idempotency_key": idempotency_key,
            "resource_id": resource_id, "dimensions": dimensions, "created_at": created_at,
        }  # fmt: skip
        return self._enqueue([usage], usage_records, "")[0]

    def consume(
        self,
        customer_id: str,
        feature_id: str,
        amount: float = 1,
        *,
        resource_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> Consumption:
        """Spend ``amount`` units of a metered feature if they fit, as one step.

        Granted only if the snapshot's usage, every process's usage Stigg has
        not counted yet and ``amount`` stay within the limit; the usage (a
        ``DELTA``) is then durable in the outbox, enqueued in the same
        transaction as the look, so threads and processes sharing the outbox
        never grant past a limit together. Denied: nothing is enqueued. With
        no snapshot the policy's fallback decides, its ``usage_limit`` counted
        the same way. A soft limit (``hasSoftLimit``) grants past the limit, as
        Stigg does; ``SET`` usage is :meth:`report_usage`'s, never a consumption.

        Raises:
            ValueError / TypeError: an id, ``amount`` (a finite number > 0) or a
                key reused for different usage.
            OutboxFullError: the outbox is at ``outbox_max_records``.
        """
        request = check.check_request(
            CheckKind.METERED, customer_id, feature_id, resource_id, check.amount(amount)
        )
        usage = {
            "customer_id": customer_id, "feature_id": feature_id, "value": amount,
            "update_behavior": "DELTA", "idempotency_key": idempotency_key,
            "resource_id": resource_id,
        }  # fmt: skip
        return self._runtime.consume(request, usage_record(usage, self._runtime.clock.time()))

    def report_usage_bulk(self, usages: Sequence[Mapping[str, Any]]) -> list[Receipt]:
        """Buffer several usage measurements (dicts with ``report_usage``'s names), all or none."""
        return self._enqueue(usages, usage_records, "report_usage_bulk takes a list of dicts")

    def _enqueue(
        self,
        items: Sequence[Mapping[str, Any]],
        build: Callable[[Sequence[Mapping[str, Any]], float], list[UsageRecord]],
        misuse: str,
    ) -> list[Receipt]:
        if isinstance(items, Mapping) or not isinstance(items, Sequence):
            raise InvalidTypeError(misuse)
        return self._runtime.enqueue(build(items, self._runtime.clock.time()))  # all valid first

    def flush(self, timeout: float = 10.0) -> FlushResult:
        """Send what can be sent within ``timeout`` seconds (nothing while Stigg is offline).

        ``drained`` is true only when the whole outbox was read and is empty
        (never while a shared outbox such as Redis is unreachable).
        """
        self._runtime.usable()
        return self._runtime.parts.usage.flusher.flush(check.positive_seconds("timeout", timeout))

    def reconcile(self, timeout: float = RECONCILE_TIMEOUT_S) -> ReconcileReport | None:
        """Drain, refresh customers touched while offline, and report contradicted decisions.

        Runs by itself when Stigg comes back; ``None`` if one is already under way.
        """
        self._runtime.usable()
        return self._runtime.parts.reconciler.run(check.positive_seconds("timeout", timeout))

    def on_reconcile(self, callback: ReportListener) -> None:
        """Call ``callback(report)`` after every reconciliation."""
        self._runtime.usable()
        self._runtime.parts.reconciler.subscribe(callback)

    # -- promotional entitlements (admin: these raise) ---------------------------------

    def grant_promotional_entitlements(
        self, customer_id: str, grants: Sequence[Mapping[str, Any]]
    ) -> list[dict[str, Any]]:
        """Grant promotions (``feature_id``, ``period``, ``usage_limit`` ...) and forget
        the customer's cached snapshot.

        Raises:
            StiggUnavailableError: Stigg did not accept it (admin calls are not buffered).
        """
        customer = check.require_id("customer_id", customer_id)
        grant = self._runtime.parts.adapter.grant_promotional_entitlements
        return self._runtime.admin(
            customer, lambda timeout_s: grant(customer, grants, timeout_s=timeout_s)
        )

    def revoke_promotional_entitlement(self, customer_id: str, feature_id: str) -> dict[str, Any]:
        """Revoke one promotion and forget the customer's cached snapshot.

        Raises:
            StiggUnavailableError: Stigg did not accept it.
        """
        customer = check.require_id("customer_id", customer_id)
        feature = check.require_id("feature_id", feature_id)
        revoke = self._runtime.parts.adapter.revoke_promotional_entitlement
        return self._runtime.admin(
            customer, lambda timeout_s: revoke(customer, feature, timeout_s=timeout_s)
        )

    # -- operations -------------------------------------------------------------

    def status(self) -> Status:
        """A report of connection state, store, outbox, policy and counters."""
        return self._runtime.status()

    def on_decision(self, hook: DecisionHook) -> Callable[[], None]:
        """Call ``hook(kind, answer, seconds)`` after every check this client answers
        (``kind``: ``"boolean"``, ``"numeric"``, ``"metered"``, ``"generic"``; ``answer``
        carries its ``decision``); returns an unsubscribe. Checks pay for hooks only
        while one is subscribed; a hook that raises is logged and never fails a check.
        """
        self._runtime.usable()
        return self._checks.subscribe(hook)

    def on_status_change(self, callback: StateListener) -> Callable[[], None]:
        """Call ``callback(old_state, new_state)`` on each change; returns an unsubscribe."""
        self._runtime.usable()
        return self._runtime.parts.health.subscribe(callback)

    def close(self) -> None:
        """Stop background work and release what this client opened; every call after
        this raises :class:`~stigg_cache.ClientClosedError` (``close()`` itself does not).

        A client collected without ``close()`` warns (``ResourceWarning``, as ``sqlite3``
        and httpx do) and is closed then, its threads stopped.
        """
        self._dropped.detach()
        self._runtime.close()

    def __enter__(self) -> Self:
        self._runtime.usable()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        parts = self._runtime.parts
        return f"ResilientClient(adapter={parts.adapter.name!r}, store={parts.store.name!r})"


@attrs.frozen
class Surface:
    """What a client answers checks with: the check surface, the walk's driver, the
    snapshot cache (its ``l1``: what memory holds) and the policy's watcher (``None``:
    the policy was given as an object, not a file)."""

    checks: Checks
    walker: Walker
    cache: SnapshotCache
    watcher: PolicyWatcher | None


def surface(client: ResilientClient) -> Surface:
    """What ``client`` answers checks with, for ``AsyncResilientClient`` (which asks the
    same checks and drives the same walk, awaiting its I/O), ``metrics`` and plug-ins."""
    runtime = client._runtime
    return Surface(client._checks, runtime.walker, runtime.parts.cache, runtime.parts.watcher)
