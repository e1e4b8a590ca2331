"""ResilientClient: the only orchestrator.

Each check walks the tiers of DESIGN §3: a fresh snapshot (CACHE), else a
stale one within budget (STALE, refreshed in the background), else a fetch
within ``check_timeout`` (LIVE), else the fallback policy (POLICY / DEFAULT).
Decisions are made by the pure :mod:`stigg_cache.core` functions; this module
gathers their inputs and does the I/O. Usage goes through a durable outbox.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar, assert_never

import attrs

from stigg_cache import _fork
from stigg_cache import _validate as check
from stigg_cache._clock import SYSTEM_CLOCK, Clock
from stigg_cache._fastpath import (
    KINDS,
    SLOT_BOOLEAN,
    SLOT_GENERIC,
    SLOT_METERED,
    SLOT_NUMERIC,
    FastPath,
)
from stigg_cache._fetcher import DEFAULT_FETCH_CONCURRENCY, Fetcher
from stigg_cache._health import Health, StateListener
from stigg_cache._log import FaultLog, logger, shown
from stigg_cache._plugins import redact, scheme_of
from stigg_cache._reconcile import Reconciler, ReportListener
from stigg_cache._usage import DEFAULT_OUTBOX_MAX_RECORDS, UsageService
from stigg_cache.adapters import adapt
from stigg_cache.adapters.base import reads_per_minute as reads_per_minute_of
from stigg_cache.core import engine, walk
from stigg_cache.core.breaker import CircuitBreaker
from stigg_cache.core.engine import CheckKind, CheckRequest
from stigg_cache.core.ledger import DEFAULT_SETTLE_S
from stigg_cache.core.pacing import (
    EDGE_READS_PER_MINUTE,
    EVENTS_PER_SECOND,
    USAGE_CALLS_PER_MINUTE,
)
from stigg_cache.core.reconcile import DecisionJournal, ReconcileReport
from stigg_cache.errors import InvalidTypeError
from stigg_cache.models import (
    AnyEntitlement,
    BooleanEntitlement,
    ConnectionState,
    Entitlement,
    EnumEntitlement,
    MeteredEntitlement,
    NumericEntitlement,
    Snapshot,
    Status,
)
from stigg_cache.outbox import default_outbox_url, open_outbox
from stigg_cache.outbox.admin import OutboxAdmin
from stigg_cache.outbox.base import Outbox
from stigg_cache.outbox.flusher import DEFAULT_LEASE_S, FlushResult, read_budget
from stigg_cache.outbox.records import (
    Consumption,
    Receipt,
    UpdateBehavior,
    UsageRecord,
    event_record,
    usage_record,
)
from stigg_cache.policy.model import BUILTIN_POLICY, FallbackPolicy
from stigg_cache.policy.watcher import PolicyWatcher
from stigg_cache.stores import Store, default_store_url, open_store
from stigg_cache.stores._url import default_store_max_bytes
from stigg_cache.stores.layered import (
    DEFAULT_L1_MAX_BYTES,
    DEFAULT_L1_MAX_ENTRIES,
    SnapshotCache,
    StoreFault,
)
from stigg_cache.stores.signed import ENV_SIGNING_KEY, SignedStore, signing_keys

_T = TypeVar("_T")
DEFAULT_CHECK_TIMEOUT_S = 0.5
DEFAULT_FETCH_TIMEOUT_S = 5.0  # a background fetch may outlive the check that started it
RECONCILE_TIMEOUT_S = 60.0
_USAGE_KINDS = (CheckKind.METERED, CheckKind.GENERIC)
# What a check answered, told after it: its kind ("boolean", ...), the answer (with its
# decision) and the seconds it took. Subscribed with ResilientClient.on_decision.
DecisionHook = Callable[[str, "AnyEntitlement", float], None]
FastAnswer = Callable[..., "AnyEntitlement | None"]
_LOCAL_SCHEMES = ("", "sqlite", "disk", "memory")  # "": a Store object given (the user's)


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
        store: a store URL (``sqlite:///path.db``, ``disk:///dir``,
            ``memory://``, plugin schemes) or a :class:`Store`; default: SQLite
            in the user's cache directory.
        policy: a path to ``fallback.yaml`` (validated now, hot reloaded on
            every edit), a :class:`FallbackPolicy`, or ``None`` for the built-in
            one (allow, logged once a minute per feature).
        check_timeout: seconds a check may wait on the network, ever.
        outbox: where usage waits for Stigg: ``sqlite:///path.db``, ``memory://``
            (not durable) or an :class:`Outbox`; default: next to the store.
        fetch_timeout: seconds a fetch may run in the background before it
            is abandoned (it keeps filling the cache after the check moved on).
        settle_s: how long after Stigg acknowledges usage a fresh snapshot is
            assumed not to include it yet (Stigg aggregates asynchronously).
        events_per_second / usage_calls_per_minute: this process's share of
            Stigg's rate limits.
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
        l1_max_entries / l1_max_bytes: bounds of the in-memory cache; bytes count
            the memory it holds (decoded snapshots and prepared answers).
        store_max_bytes: about the most a file store holds (SQLite, disk): the least
            recently used snapshots go first (SQLite: written or read; disk:
            written); default: a tenth of the disk's free
            space at start-up, between 64 MiB and 10 GiB. Snapshots older than the
            policy's longest ``max_staleness`` are swept away in any case.
        signing_key: HMAC-SHA256 key(s) for tamper-evident snapshots (the
            first signs, all verify); default ``STIGG_CACHE_SIGNING_KEY``
            (comma-separated). A snapshot that fails verification is a miss.
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
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._check_timeout_s = check.positive_seconds("check_timeout", check_timeout)
        self._fetch_timeout_s = check.positive_seconds("fetch_timeout", fetch_timeout)
        check.positive_int("outbox_max_records", outbox_max_records)
        if store_max_bytes is not None:
            check.positive_int("store_max_bytes", store_max_bytes)
        # What is opened or started is closed again if a later step fails: a constructor
        # that raises leaves no thread, connection or file behind.
        with contextlib.ExitStack() as undo:
            self._watcher: PolicyWatcher | None = None
            if isinstance(policy, str | os.PathLike):
                self._watcher = PolicyWatcher(policy, on_reload=self._use_policy)
                undo.callback(self._watcher.close)
                policy = self._watcher.current
            elif policy is not None and not isinstance(policy, FallbackPolicy):
                raise InvalidTypeError(
                    f"policy must be a path, a FallbackPolicy or None, got {type(policy).__name__}"
                )
            self._policy = policy or BUILTIN_POLICY
            self._clock = clock
            self._faults = FaultLog(clock)
            self._adapter = adapt(
                inner, api_key=api_key, base_url=base_url, fetch_timeout_s=self._fetch_timeout_s
            )
            undo.callback(self._adapter.close)
            self._owns_store = not isinstance(store, Store)
            store_url, opened = self._open_store(store, signing_keys(signing_key), undo)
            self._owns_outbox = not isinstance(outbox, Outbox)
            self._outbox = (
                open_outbox(outbox or default_outbox_url(store_url if self._owns_store else None))
                if not isinstance(outbox, Outbox)
                else outbox
            )
            if self._owns_outbox:
                undo.callback(self._outbox.close)
            self._health = Health(breaker or CircuitBreaker(), clock)
            self._cache = SnapshotCache(
                opened,
                clock,
                self._store_fault,
                l1_max_entries,
                l1_max_bytes,
                keep_for=lambda: self._policy.keep_snapshots_s,
                store_max_bytes=(
                    store_max_bytes
                    if store_max_bytes is not None
                    else default_store_max_bytes(store_url)
                    if self._owns_store
                    else None
                ),
            )

            self._fetcher = Fetcher(
                self._adapter,
                self._cache,
                self._health,
                clock,
                check_timeout_s=self._check_timeout_s,
                fetch_timeout_s=self._fetch_timeout_s,
                concurrency=fetch_concurrency,
                reads=read_budget(
                    self._outbox, reads_per_minute or reads_per_minute_of(self._adapter)
                ),
            )
            undo.callback(self._fetcher.close)
            self._usage = UsageService(
                self._outbox,
                self._adapter,
                self._health,
                clock,
                lambda: self._policy,
                settle_s=settle_s,
                events_per_second=events_per_second,
                usage_calls_per_minute=usage_calls_per_minute,
                lease_s=outbox_lease_s,
                max_records=outbox_max_records,
            )
            undo.callback(self._usage.close)
            self._cache.on_held = lambda scope: self._usage.read_customer(*scope)
            self._warm = FastPath(
                self._cache.l1,
                self._policy,
                monotonic=clock.monotonic,
                wall=clock.time,
                usage=self._usage,
                grew=self._cache.grew,
            )
            self._fast: FastAnswer = self._warm.answer  # bound once: called on every check
            self._hooks: tuple[DecisionHook, ...] = ()
            self._hooks_changed = threading.Lock()
            self._journal = DecisionJournal()
            _fork.renew_after_fork(self._journal, DecisionJournal.renew_lock)
            self._reconciler = Reconciler(
                self._journal,
                self._usage,
                self._fetcher,
                clock,
                self._faults,
                fetch_timeout_s=self._fetch_timeout_s,
                reads_per_minute=reads_per_minute or EDGE_READS_PER_MINUTE,
            )
            self._health.subscribe(self._on_state_change)
            self.outbox = OutboxAdmin(self._outbox, clock)
            self._closed = False
            self._forked = False
            undo.pop_all()  # built: close() releases them from now on
        _fork.renew_after_fork(self, ResilientClient._renew)

    def _renew(self) -> None:
        """In a forked child, before anything runs: background work restarts on first use.

        Each part renews its own process state (connections, locks, flights); the
        fast path answers nothing until :meth:`_resume` has run, so the first check
        of the child, warm or not, goes through it.
        """
        self._forked = True
        self._warm.l1 = OrderedDict()

    def _resume(self) -> None:
        """First use in a forked child: the flusher and the policy watcher of this process."""
        self._forked = False
        if self._closed:
            return
        self._usage.flusher.start()
        if self._watcher is not None:
            self._watcher.start()
        self._warm.l1 = self._cache.l1

    def _open_store(
        self, store: str | Store | None, keys: Sequence[bytes], undo: contextlib.ExitStack
    ) -> tuple[str, Store]:
        """The store's URL as given (secrets and all: for opening the outbox beside it
        only, never shown) and the store, signed with ``keys`` if any; one this client
        opened is closed by ``undo``."""
        if store is None or isinstance(store, str | Path):
            url = default_store_url() if store is None else str(store)
            opened = open_store(url)
            undo.callback(opened.close)
        elif isinstance(store, Store):
            url, opened = "", store
        else:
            raise InvalidTypeError(f"store must be a URL or a Store, got {type(store).__name__}")
        self._store_name = redact(url) if self._owns_store else repr(opened)
        self._signing = f"hmac-sha256, {len(keys)} key(s)" if keys else None
        if keys:
            return url, SignedStore(opened, keys)
        if scheme_of(url) not in _LOCAL_SCHEMES:
            logger.warning(
                "stigg_cache.unsigned_shared_store: %s is shared over the network and its "
                "snapshots are not signed: anyone who can write to it can grant features; "
                "set signing_key= (or %s)",
                self._store_name,
                ENV_SIGNING_KEY,
                extra={"event": "stigg_cache.unsigned_shared_store"},
            )
        return url, opened

    # -- checks ---------------------------------------------------------------

    def get_boolean_entitlement(
        self, *, customer_id: str, feature_id: str, resource_id: str | None = None
    ) -> BooleanEntitlement:
        """Whether a customer has a boolean feature."""
        warm = self._fast(SLOT_BOOLEAN, customer_id, feature_id, resource_id)
        if warm is not None:
            return warm
        return self._check(CheckKind.BOOLEAN, customer_id, feature_id, resource_id)

    def get_numeric_entitlement(
        self, *, customer_id: str, feature_id: str, resource_id: str | None = None
    ) -> NumericEntitlement:
        """A customer's configured number for a feature (``value``)."""
        warm = self._fast(SLOT_NUMERIC, customer_id, feature_id, resource_id)
        if warm is not None:
            return warm  # type: ignore[return-value]
        return self._check(CheckKind.NUMERIC, customer_id, feature_id, resource_id)  # type: ignore[return-value]

    def get_metered_entitlement(
        self,
        *,
        customer_id: str,
        feature_id: str,
        requested_usage: float = engine.DEFAULT_REQUESTED_USAGE,
        resource_id: str | None = None,
    ) -> MeteredEntitlement:
        """Whether ``requested_usage`` more units fit, counting usage Stigg has not seen yet."""
        warm = self._fast(SLOT_METERED, customer_id, feature_id, resource_id, requested_usage)
        if warm is not None:
            return warm  # type: ignore[return-value]
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
        warm = self._fast(SLOT_GENERIC, customer_id, feature_id, resource_id, requested_usage)
        if warm is not None:
            return warm.has_access
        return self._check(
            CheckKind.GENERIC, customer_id, feature_id, resource_id, usage=requested_usage
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
        answer = self._walked(self._every(customer_id, resource_id))[0]
        assert isinstance(answer, Snapshot)
        return answer

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
        """A check the fast path did not answer: the decision walk, and its hooks told."""
        started = time.perf_counter()
        request = self._request(kind, customer_id, feature_id, resource_id, usage, values)
        answer = self._walked(request)[0]
        assert not isinstance(answer, Snapshot)
        if self._hooks:
            self._told(kind.value, answer, time.perf_counter() - started)
        return answer

    @staticmethod
    def _every(customer_id: object, resource_id: object) -> walk.EveryFeature:
        """``get_entitlements``' arguments, validated."""
        return walk.EveryFeature(
            check.require_id("customer_id", customer_id), check.opt_id("resource_id", resource_id)
        )

    @staticmethod
    def _request(  # noqa: PLR0917 - the check's own arguments, in their order
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
            check.require_id("customer_id", customer_id),
            check.require_id("feature_id", feature_id),
            check.opt_id("resource_id", resource_id),
            check.requested_usage(usage),
            check.requested_values(values),
        )

    # -- the walk's driver: the I/O of each state of core.walk ------------------------------

    def _walked(self, question: walk.Question) -> tuple[AnyEntitlement | Snapshot, walk.Judgement]:
        """The answer to a question, and how to judge it again with other local usage."""
        state = self._begin(question)
        while not isinstance(state, walk.Answered):
            state = self._step(state)
        return self._finish(state)

    def _begin(self, question: walk.Question) -> walk.State:
        if self._forked:
            self._resume()
        return walk.begin(
            question,
            self._policy,
            started=self._clock.monotonic(),
            check_timeout_s=self._check_timeout_s,
            offline=self._health.offline,
            last_error=self._health.last_error,
        )

    def _step(self, state: walk.State) -> walk.State:
        """The I/O a state needs, and the state it leads to."""
        scope = state.walk.scope
        match state:
            case walk.ReadHeld():
                return state.held(self._cache.get(*scope), self._now())
            case walk.ReadNewer():
                return state.held(self._cache.newer(scope), self._now())
            case walk.Unusable():
                self._cache.invalidate(*scope)
                self._store_fault(StoreFault.ENTRY_UNUSABLE, state.error)
                return state.dropped(self._now())
            case walk.Fetch():
                return state.fetched(self._fetcher.fetch(scope, state.within_s), self._now())
            case walk.Answered():
                return state
            case _:
                assert_never(state)

    def _finish(self, state: walk.Answered) -> tuple[AnyEntitlement | Snapshot, walk.Judgement]:
        """What follows an answer: a refresh behind it, the default's log line, the journal."""
        question = state.walk.question
        if state.memo is not None:
            self._warm.keep(state.memo, state.walk.policy)  # the policy it was made for
        if state.refresh:
            self._fetcher.refresh(state.walk.scope)
        if state.default_allow is not None and isinstance(question, CheckRequest):
            self._faults.report(
                "stigg_cache.default_allow",
                f"no policy entry for feature {shown(question.feature_id)!r}: "
                f"allowing ({state.default_allow})",
                key=question.feature_id,
            )
        answer = state.judgement.answer(self._usage.local_usage)
        if state.journal and isinstance(question, CheckRequest) and answer.decision is not None:
            granted = not isinstance(answer, Snapshot) and answer.has_access
            self._journal.record(self._clock.time(), question, answer.decision.source, granted)
        return answer, state.judgement

    def _now(self) -> walk.Now:
        return walk.Now(self._clock.monotonic(), self._clock.time())

    # -- usage ---------------------------------------------------------------------

    def report_event(self, events: Sequence[Mapping[str, Any]]) -> list[Receipt]:
        """Buffer raw events durably; returns one receipt each once they are on disk.

        Each event: ``customer_id``, ``event_name``, ``idempotency_key``
        (generated if missing), optional ``dimensions``, ``resource_id``,
        ``timestamp`` (aware datetime or ISO-8601; now if missing). Nothing is
        enqueued if any event is invalid. Never touches the network.
        """
        return self._enqueue(events, event_record, "report_event takes events=[{...}, ...]")

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
        return self._enqueue([usage], usage_record, "")[0]

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
        request = attrs.evolve(
            self._request(CheckKind.METERED, customer_id, feature_id, resource_id),
            requested_usage=check.amount(amount),
        )
        usage = {
            "customer_id": customer_id, "feature_id": feature_id, "value": amount,
            "update_behavior": "DELTA", "idempotency_key": idempotency_key,
            "resource_id": resource_id,
        }  # fmt: skip
        record = usage_record(usage, self._clock.time())
        _, judgement = self._walked(request)  # may fetch: outside the outbox's transaction
        answers: list[MeteredEntitlement] = []

        def admit() -> bool:
            answer = judgement.answer(self._usage.ledger.local_usage)
            assert isinstance(answer, MeteredEntitlement)
            answers.append(answer)
            return answer.has_access

        offline = self._health.state is not ConnectionState.CONNECTED
        receipt = self._usage.consume(record, admit, offline=offline)
        if not answers:  # a retry of a consumption already enqueued
            admit()
        return Consumption(receipt is not None, answers[-1], receipt)

    def report_usage_bulk(self, usages: Sequence[Mapping[str, Any]]) -> list[Receipt]:
        """Buffer several usage measurements (dicts with ``report_usage``'s names), all or none."""
        return self._enqueue(usages, usage_record, "report_usage_bulk takes a list of dicts")

    def _enqueue(
        self,
        items: Sequence[Mapping[str, Any]],
        build: Callable[[Mapping[str, Any], float], UsageRecord],
        misuse: str,
    ) -> list[Receipt]:
        if isinstance(items, Mapping) or not isinstance(items, Sequence):
            raise InvalidTypeError(misuse)
        if self._forked:
            self._resume()
        now = self._clock.time()
        records = [build(item, now) for item in items]  # all validated before any is enqueued
        offline = self._health.state is not ConnectionState.CONNECTED
        return self._usage.enqueue(records, offline=offline)

    def flush(self, timeout: float = 10.0) -> FlushResult:
        """Send what can be sent within ``timeout`` seconds (nothing while Stigg is offline).

        ``drained`` is true only when the whole outbox was read and is empty
        (never while a shared outbox such as Redis is unreachable).
        """
        if self._forked:
            self._resume()
        return self._usage.flusher.flush(check.positive_seconds("timeout", timeout))

    def reconcile(self, timeout: float = RECONCILE_TIMEOUT_S) -> ReconcileReport | None:
        """Drain, refresh customers touched while offline, and report contradicted decisions.

        Runs by itself when Stigg comes back; ``None`` if one is already under way.
        """
        return self._reconciler.run(check.positive_seconds("timeout", timeout))

    def on_reconcile(self, callback: ReportListener) -> None:
        """Call ``callback(report)`` after every reconciliation."""
        self._reconciler.subscribe(callback)

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
        grant = self._adapter.grant_promotional_entitlements
        return self._admin(
            customer, lambda: grant(customer, grants, timeout_s=self._fetch_timeout_s)
        )

    def revoke_promotional_entitlement(self, customer_id: str, feature_id: str) -> dict[str, Any]:
        """Revoke one promotion and forget the customer's cached snapshot.

        Raises:
            StiggUnavailableError: Stigg did not accept it.
        """
        customer = check.require_id("customer_id", customer_id)
        feature = check.require_id("feature_id", feature_id)
        revoke = self._adapter.revoke_promotional_entitlement
        return self._admin(
            customer, lambda: revoke(customer, feature, timeout_s=self._fetch_timeout_s)
        )

    def _admin(self, customer_id: str, call: Callable[[], _T]) -> _T:
        try:
            return call()
        finally:  # whatever Stigg did, the cached snapshot may now be wrong
            self._cache.invalidate(customer_id, None)

    # -- operations -------------------------------------------------------------

    def status(self) -> Status:
        """A report of connection state, store, outbox, policy and counters."""
        if self._forked:
            self._resume()
        health = self._health
        outbox = self._usage.stats()
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
            outbox_depth=outbox.pending,
            outbox_oldest_at=outbox.oldest_pending_at,
            dead_letters=outbox.dead_letters,
            faults=dict(self._faults.counts),
            outbox_error=outbox.problem or self._usage.flusher.fault,
            signing=self._signing,
            tamper_detections=self._faults.counts["stigg_cache.snapshot_tampered"],
            auth_error=self._usage.flusher.auth_error or health.auth_error,
            sending_resumes_at=self._usage.flusher.resumes_at(),
        )

    def on_decision(self, hook: DecisionHook) -> Callable[[], None]:
        """Call ``hook(kind, answer, seconds)`` after every check this client answers
        (``kind``: ``"boolean"``, ``"numeric"``, ``"metered"``, ``"generic"``; ``answer``
        carries its ``decision``); returns an unsubscribe. Checks pay for hooks only
        while one is subscribed; a hook that raises is logged and never fails a check.
        """
        with self._hooks_changed:
            self._hooks = (*self._hooks, hook)
            if len(self._hooks) == 1:  # an instance attribute over the bare fast path
                self._fast = self._told_fast

        def unsubscribe() -> None:
            with self._hooks_changed:
                self._hooks = tuple(h for h in self._hooks if h is not hook)
                if not self._hooks:  # back to the bare fast path
                    self._fast = self._warm.answer

        return unsubscribe

    def _told_fast(self, slot: int, *args: Any) -> AnyEntitlement | None:
        """The fast path, telling the hooks what it answered and how long it took."""
        started = time.perf_counter()
        answer = self._warm.answer(slot, *args)
        if answer is not None:
            self._told(KINDS[slot].value, answer, time.perf_counter() - started)
        return answer

    def _told(self, kind: str, answer: AnyEntitlement, seconds: float) -> None:
        """Tell every hook; one that raises is logged (never the check's failure)."""
        for hook in self._hooks:
            try:
                hook(kind, answer, seconds)
            except Exception:  # the caller's code
                self._faults.report("stigg_cache.hook_failed", repr(hook), key=repr(hook))

    def on_status_change(self, callback: StateListener) -> Callable[[], None]:
        """Call ``callback(old_state, new_state)`` on each change; returns an unsubscribe."""
        return self._health.subscribe(callback)

    def close(self) -> None:
        """Stop background work and release what this client opened."""
        if self._closed:
            return
        self._closed = True
        self._reconciler.close()
        self._usage.close()
        self._fetcher.close()
        if self._watcher is not None:
            self._watcher.close()
        self._adapter.close()
        if self._owns_outbox:
            self._outbox.close()
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

    def _on_state_change(self, old: ConnectionState, new: ConnectionState) -> None:
        if new is ConnectionState.CONNECTED and old is not ConnectionState.CONNECTED:
            self._usage.flusher.wake()
            self._reconciler.run_in_background(RECONCILE_TIMEOUT_S)

    def _use_policy(self, policy: FallbackPolicy) -> None:
        self._policy = policy  # one reference swap: checks in flight keep the old one
        self._warm.policy = policy

    def _store_fault(self, fault: StoreFault, error: Exception | None) -> None:
        if error is None:
            self._health.store_fault(None)
            return
        self._faults.report(f"stigg_cache.{fault.value}", str(error), key=fault.value)
        if fault.store_unhealthy:  # not a bad entry, nor a lease the store was too busy for
            self._health.store_fault(f"{fault.value}: {error}")

    def __repr__(self) -> str:
        return f"ResilientClient(adapter={self._adapter.name!r}, store={self._store_name!r})"
