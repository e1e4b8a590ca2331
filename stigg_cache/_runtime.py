"""The composition root: a client's parts built from its options, then served.

:class:`~stigg_cache.ResilientClient` is the public face. :func:`build` makes its
parts in order: health, the policy (and its watcher), the adapter, the store
(signed if keys are given), the outbox beside it, the usage service, the
snapshot cache, the fetcher, the fast path, the journal and the reconciler. Each
is handed what it uses when it is made, and :func:`build` returns them as one
:class:`Parts` record: nothing is wired afterwards. The policy in force is one
reference (:class:`~stigg_cache.policy.model.PolicyRef`) that every part reads
and a reload swaps. Plain arguments are validated before anything opens, and
whatever was opened or started is closed again if a later step fails: a
constructor that raises leaves no thread, connection or file behind.

:class:`Runtime` serves with the parts: the walk's driver, the checks, the
verbs the client asks of it, and its life (closed, forked).
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import attrs

from stigg_cache._engine.breaker import Health
from stigg_cache._engine.checks import Checks, DecisionHook
from stigg_cache._engine.fastpath import FastPath
from stigg_cache._engine.fetcher import DEFAULT_FETCH_CONCURRENCY, Fetcher
from stigg_cache._engine.journal import HostJournal
from stigg_cache._engine.ledger import DEFAULT_OUTBOX_MAX_RECORDS, UsageService
from stigg_cache._engine.reconcile import Reconciler
from stigg_cache._engine.walk import Walker
from stigg_cache._support import fork
from stigg_cache._support.clock import SYSTEM_CLOCK, Clock
from stigg_cache._support.log import FaultLog, logger
from stigg_cache._support.plugins import redact, scheme_of
from stigg_cache._support.url import default_store_max_bytes, path_from_url
from stigg_cache.adapters import adapt
from stigg_cache.adapters._environment import environment_of
from stigg_cache.adapters._plans import knows_plans
from stigg_cache.adapters.base import Adapter
from stigg_cache.adapters.base import reads_per_minute as reads_per_minute_of
from stigg_cache.core import validate as check
from stigg_cache.core.breaker import CircuitBreaker
from stigg_cache.core.engine import CheckRequest
from stigg_cache.core.ledger import DEFAULT_SETTLE_S
from stigg_cache.core.pacing import EDGE_READS_PER_MINUTE, EVENTS_PER_SECOND, USAGE_CALLS_PER_MINUTE
from stigg_cache.core.share import HeadroomShare, within_share
from stigg_cache.environment import (
    DEFAULT_NAMESPACE,
    apart_from,
    checked_namespace,
    owned_by_another,
)
from stigg_cache.errors import ClientClosedError, InvalidTypeError
from stigg_cache.models import ConnectionState, MeteredEntitlement, Status
from stigg_cache.outbox import default_outbox_url, open_outbox
from stigg_cache.outbox.base import Outbox
from stigg_cache.outbox.flusher import DEFAULT_LEASE_S, read_budget
from stigg_cache.outbox.records import Consumption, Receipt, UsageRecord
from stigg_cache.policy.model import BUILTIN_POLICY, FallbackPolicy, PolicyRef
from stigg_cache.policy.rules import plans_unmatchable
from stigg_cache.policy.watcher import PolicyWatcher
from stigg_cache.stores import Store, default_store_url, open_store
from stigg_cache.stores.layered import DEFAULT_L1_MAX_BYTES, DEFAULT_L1_MAX_ENTRIES, SnapshotCache
from stigg_cache.stores.monitored import StoreFault
from stigg_cache.stores.signed import ENV_SIGNING_KEY, SignedStore, signing_keys

DEFAULT_CHECK_TIMEOUT_S = 0.5
DEFAULT_FETCH_TIMEOUT_S = 5.0  # a background fetch may outlive the check that started it
RECONCILE_TIMEOUT_S = 60.0
_LOCAL_SCHEMES = ("", "sqlite", "disk", "memory")  # "": a Store object given (the user's)
_T = TypeVar("_T")


@attrs.frozen(kw_only=True)
class Options:
    """Every option of a client and its default (:class:`~stigg_cache.ResilientClient`
    documents each). Plain values are checked here, before anything is opened."""

    store: str | Store | None = None
    policy: FallbackPolicy | str | os.PathLike[str] | None = None
    check_timeout: float = DEFAULT_CHECK_TIMEOUT_S
    api_key: str | None = attrs.field(default=None, repr=False)
    base_url: str | None = None
    outbox: str | Outbox | None = None
    fetch_timeout: float = DEFAULT_FETCH_TIMEOUT_S
    fetch_concurrency: int = DEFAULT_FETCH_CONCURRENCY
    l1_max_entries: int = DEFAULT_L1_MAX_ENTRIES
    l1_max_bytes: int = DEFAULT_L1_MAX_BYTES
    store_max_bytes: int | None = None
    settle_s: float = DEFAULT_SETTLE_S
    events_per_second: float = EVENTS_PER_SECOND
    usage_calls_per_minute: float = USAGE_CALLS_PER_MINUTE
    reads_per_minute: float | None = None
    outbox_lease_s: float = DEFAULT_LEASE_S
    outbox_max_records: int = DEFAULT_OUTBOX_MAX_RECORDS
    breaker: CircuitBreaker | None = None
    signing_key: str | bytes | Sequence[str | bytes] | None = attrs.field(default=None, repr=False)
    namespace: str | None = None
    clock: Clock = SYSTEM_CLOCK

    def __attrs_post_init__(self) -> None:
        check.positive_seconds("check_timeout", self.check_timeout)
        check.positive_seconds("fetch_timeout", self.fetch_timeout)
        check.positive_int("outbox_max_records", self.outbox_max_records)
        if self.namespace is not None:
            checked_namespace(self.namespace)
        if self.store_max_bytes is not None:
            check.positive_int("store_max_bytes", self.store_max_bytes)
        if self.policy is not None and not isinstance(
            self.policy, FallbackPolicy | str | os.PathLike
        ):
            raise InvalidTypeError(
                f"policy must be a path, a FallbackPolicy or None, got {type(self.policy).__name__}"
            )
        if self.store is not None and not isinstance(self.store, str | Path | Store):
            raise InvalidTypeError(
                f"store must be a URL or a Store, got {type(self.store).__name__}"
            )


@attrs.frozen(kw_only=True)
class OpenedStore:
    """The snapshot store as built: the store itself (signed if keys are given), its URL
    (``""``: the user's own object), its name in logs and ``status()``, whether this client
    opened it (and closes it), the prefix of this client's keys, how it signs, and the
    size it is pruned to."""

    store: Store
    url: str
    name: str
    owned: bool
    space: str
    signing: str | None
    max_bytes: int | None


@attrs.frozen(kw_only=True)
class Parts:
    """A client's parts, as :func:`build` made them; :class:`Runtime` serves with them.

    ``policy`` is the one reference to the policy in force: the fast path, the
    walk, the usage service and the snapshot cache read it; a reload swaps it.
    """

    options: Options
    namespace: str
    faults: FaultLog
    health: Health
    policy: PolicyRef
    watcher: PolicyWatcher | None
    adapter: Adapter
    store: OpenedStore
    outbox: Outbox
    owns_outbox: bool
    usage: UsageService
    cache: SnapshotCache
    fetcher: Fetcher
    warm: FastPath
    journal: HostJournal
    reconciler: Reconciler


def build(inner: object, options: Options) -> Parts:
    """A client's parts, made in order, each handed what it uses; whatever was opened or
    started is closed again if a later step fails."""
    clock = options.clock
    faults = FaultLog(clock)
    health = Health(options.breaker or CircuitBreaker(), clock, faults)
    environment = environment_of(inner, options.api_key, options.base_url)
    namespace = options.namespace or environment
    with contextlib.ExitStack() as undo:
        watcher, policy = _policy(options.policy, undo)
        adapter = _adapter(inner, options, policy, undo)
        store = _store(options, namespace, undo)
        outbox, owns_outbox = _outbox(options, store, namespace, environment, undo)
        usage = _usage(options, outbox, adapter, health, policy, undo=undo)
        cache = _cache(
            options, store, functools.partial(_store_fault, faults, health), policy, usage
        )
        fetcher = _fetcher(options, adapter, cache, health, outbox, undo=undo)
        journal = HostJournal(outbox, faults)
        undo.callback(journal.close)
        reconciler = _reconciler(options, journal, usage, fetcher, faults)
        health.subscribe(functools.partial(_reconnected, usage, reconciler))
        usage.flusher.probe_with(fetcher.probe)  # idle, it still learns of Stigg
        parts = Parts(
            options=options,
            namespace=namespace,
            faults=faults,
            health=health,
            policy=policy,
            watcher=watcher,
            adapter=adapter,
            store=store,
            outbox=outbox,
            owns_outbox=owns_outbox,
            usage=usage,
            cache=cache,
            fetcher=fetcher,
            warm=_fast_path(options, cache, policy, usage),
            journal=journal,
            reconciler=reconciler,
        )
        undo.pop_all()  # built: Runtime.close() releases them from now on
    return parts


def _policy(
    given: FallbackPolicy | str | os.PathLike[str] | None, undo: contextlib.ExitStack
) -> tuple[PolicyWatcher | None, PolicyRef]:
    """The policy in force, and the watcher that reloads it into the same reference (a
    path given)."""
    if not isinstance(given, str | os.PathLike):
        return None, PolicyRef(given or BUILTIN_POLICY)
    watcher = PolicyWatcher(given)
    undo.callback(watcher.close)
    return watcher, watcher.policy


def _adapter(
    inner: object, options: Options, policy: PolicyRef, undo: contextlib.ExitStack
) -> Adapter:
    """The adapter for the user's Stigg client, and its warning of rules on plans it cannot
    match (now, and at each reload)."""
    adapter = adapt(
        inner,
        api_key=options.api_key,
        base_url=options.base_url,
        fetch_timeout_s=options.fetch_timeout,
    )
    undo.callback(adapter.close)
    warning = _PlansWarning(adapter)
    warning(policy.current)
    policy.subscribe(warning)
    return adapter


class _PlansWarning:
    """Once per client: rules on ``plans:`` that this client's answers cannot match (of
    the policy it starts with, or of one reloaded)."""

    def __init__(self, adapter: Adapter) -> None:
        self._adapter = adapter
        self._warned = False

    def __call__(self, policy: FallbackPolicy) -> None:
        if self._warned or knows_plans(self._adapter):
            return
        warning = plans_unmatchable(policy.rules, f"the {self._adapter.name} client")
        if warning is not None:
            self._warned = True
            logger.warning(
                "stigg_cache.plans_unknown: %s",
                warning,
                extra={"event": "stigg_cache.plans_unknown"},
            )


def _store(options: Options, namespace: str, undo: contextlib.ExitStack) -> OpenedStore:
    """The snapshot store given, or opened from its URL (signed if keys are given)."""
    given = options.store
    owned = not isinstance(given, Store)
    keys = signing_keys(options.signing_key)
    if isinstance(given, Store):
        url, opened = "", given
    else:
        url = default_store_url(namespace) if given is None else str(given)
        opened = open_store(url)
        undo.callback(opened.close)
    name = redact(url) if owned else repr(opened)
    space = _space(url, name, namespace, explicit=owned and given is not None)
    if space:
        name += f" (keys of {namespace})"
    if keys:
        opened = SignedStore(opened, keys)
    elif scheme_of(url) not in _LOCAL_SCHEMES:
        logger.warning(
            "stigg_cache.unsigned_shared_store: %s is shared over the network and its "
            "snapshots are not signed: anyone who can write to it can grant features; "
            "set signing_key= (or %s)",
            name,
            ENV_SIGNING_KEY,
            extra={"event": "stigg_cache.unsigned_shared_store"},
        )
    max_bytes = options.store_max_bytes
    if max_bytes is None and owned:
        max_bytes = default_store_max_bytes(url)
    return OpenedStore(
        store=opened,
        url=url,
        name=name,
        owned=owned,
        space=space,
        signing=f"hmac-sha256, {len(keys)} key(s)" if keys else None,
        max_bytes=max_bytes,
    )


def _space(url: str, name: str, namespace: str, *, explicit: bool) -> str:
    """The prefix of this client's snapshot keys: none in its own store; its namespace in
    a file store (named by the user, opened here) another environment used first
    (DESIGN §11)."""
    scheme = scheme_of(url)
    if not explicit or scheme not in ("sqlite", "disk"):
        return ""
    owner = owned_by_another(path_from_url(url, scheme), namespace)
    if owner is None:
        return ""
    _kept_apart(name, owner, namespace, "its snapshots under keys of its own")
    return f"{namespace}:"


def _kept_apart(name: str, owner: str, namespace: str, where: str) -> None:
    logger.info(
        "stigg_cache.environment_apart: %s belongs to environment %s; this client "
        "(environment %s) keeps %s",
        name,
        owner,
        namespace,
        where,
        extra={"event": "stigg_cache.environment_apart"},
    )


def _outbox(
    options: Options,
    store: OpenedStore,
    namespace: str,
    environment: str,
    undo: contextlib.ExitStack,
) -> tuple[Outbox, bool]:
    """The outbox given, else one beside the store this client opened; whether it is
    this client's to close."""
    given = options.outbox
    if isinstance(given, Outbox):
        return given, False
    url = given or default_outbox_url(store.url if store.owned else None, namespace)
    if scheme_of(url) == "sqlite" and (given or options.store is not None):
        url = _own_outbox(url, namespace)
    opened = open_outbox(
        url,
        # the environment, not the namespace: one namespace= shared by two is caught
        environment=None if environment == DEFAULT_NAMESPACE else environment,
    )
    undo.callback(opened.close)
    return opened, True


def _own_outbox(url: str, namespace: str) -> str:
    """A SQLite outbox named by the user (or beside their store): this environment's,
    or, another's first, a file of its own beside it (usage never sent with their key)."""
    path = path_from_url(url, "sqlite")
    owner = owned_by_another(path, namespace)
    if owner is None:
        return url
    own = f"sqlite:///{apart_from(path, namespace)}"
    _kept_apart(redact(url), owner, namespace, f"its usage in {redact(own)}")
    return own


def _usage(
    options: Options,
    outbox: Outbox,
    adapter: Adapter,
    health: Health,
    policy: PolicyRef,
    *,
    undo: contextlib.ExitStack,
) -> UsageService:
    usage = UsageService(
        outbox,
        adapter,
        health,
        options.clock,
        policy,
        settle_s=options.settle_s,
        events_per_second=options.events_per_second,
        usage_calls_per_minute=options.usage_calls_per_minute,
        lease_s=options.outbox_lease_s,
        max_records=options.outbox_max_records,
    )
    undo.callback(usage.close)
    return usage


def _cache(
    options: Options,
    store: OpenedStore,
    on_fault: Callable[[StoreFault, Exception | None], None],
    policy: PolicyRef,
    usage: UsageService,
) -> SnapshotCache:
    """The snapshot cache over the store: L1 in memory over it."""
    return SnapshotCache(
        store.store,
        options.clock,
        on_fault,
        options.l1_max_entries,
        options.l1_max_bytes,
        keep_for=policy.keep_snapshots_s,
        on_held=usage.held,
        store_max_bytes=store.max_bytes,
        space=store.space,
    )


def _fetcher(
    options: Options,
    adapter: Adapter,
    cache: SnapshotCache,
    health: Health,
    outbox: Outbox,
    *,
    undo: contextlib.ExitStack,
) -> Fetcher:
    reads = options.reads_per_minute or reads_per_minute_of(adapter)
    fetcher = Fetcher(
        adapter,
        cache,
        health,
        options.clock,
        check_timeout_s=options.check_timeout,
        fetch_timeout_s=options.fetch_timeout,
        concurrency=options.fetch_concurrency,
        reads=read_budget(outbox, reads),
    )
    undo.callback(fetcher.close)
    return fetcher


def _fast_path(
    options: Options, cache: SnapshotCache, policy: PolicyRef, usage: UsageService
) -> FastPath:
    """The fast path over L1's entries, with the policy in force and local usage."""
    clock = options.clock
    return FastPath(
        cache.l1,
        policy,
        monotonic=clock.monotonic,
        wall=clock.time,
        usage=usage,
        grew=cache.grew,
    )


def _reconciler(
    options: Options,
    journal: HostJournal,
    usage: UsageService,
    fetcher: Fetcher,
    faults: FaultLog,
) -> Reconciler:
    return Reconciler(
        journal,
        usage,
        fetcher,
        options.clock,
        faults,
        fetch_timeout_s=options.fetch_timeout,
        reads_per_minute=options.reads_per_minute or EDGE_READS_PER_MINUTE,
    )


def _store_fault(
    faults: FaultLog, health: Health, fault: StoreFault, error: Exception | None
) -> None:
    """A store failed (logged once, counted, in status) or works again (``None``)."""
    if error is None:
        health.store_fault(None)
        return
    faults.report(f"stigg_cache.{fault.value}", str(error), key=fault.value)
    if fault.store_unhealthy:  # not a bad entry, nor a lease the store was too busy for
        health.store_fault(f"{fault.value}: {error}")


def _reconnected(
    usage: UsageService, reconciler: Reconciler, old: ConnectionState, new: ConnectionState
) -> None:
    """Stigg is back: send what waits, and reconcile what was decided without it."""
    if new is ConnectionState.CONNECTED and old is not ConnectionState.CONNECTED:
        usage.flusher.wake()
        reconciler.run_in_background(RECONCILE_TIMEOUT_S)


class Runtime:
    """A client served from its parts: the walk's driver and the checks over them, the
    verbs the client asks, and its life (refused once closed, resumed in a forked child)."""

    def __init__(self, inner: object, options: Options) -> None:
        self.parts = parts = build(inner, options)
        self.clock = options.clock
        self.check_timeout_s = options.check_timeout
        self.closed = False
        self.forked = False
        # The walk's driver and the checks serve: each walk first asks this runtime (its
        # host) whether the client may be used, so they are made here, over the parts.
        self.walker = Walker(
            self,
            parts.policy,
            parts.cache,
            parts.fetcher,
            parts.health,
            parts.usage,
            parts.warm,
            parts.faults,
            parts.journal,
        )
        self.checks = Checks(parts.warm, self.walker.walked, parts.faults)
        fork.renew_after_fork(self, Runtime._renew)

    def store_fault(self, fault: StoreFault, error: Exception | None) -> None:
        """A store fault to log, count and show (the walk's: an entry that does not parse)."""
        _store_fault(self.parts.faults, self.parts.health, fault, error)

    # -- what the client asks of it -----------------------------------------------------

    def consume(self, request: CheckRequest, record: UsageRecord) -> Consumption:
        """``ResilientClient.consume``: judged once outside the outbox's transaction (the
        walk may fetch), then again inside it with every process's usage."""
        # Journaled at the usage's stamp: its own units are reported at or after it.
        _, judgement = self.walker.walked(request, at=record.stamped_at)  # refused once closed
        usage = self.parts.usage
        answers: list[MeteredEntitlement] = []

        def admit(share: HeadroomShare | None) -> bool:
            answer = judgement.answer(usage.local_usage_now)  # incomplete: denied
            assert isinstance(answer, MeteredEntitlement)
            answer = within_share(answer, record.value, share)
            answers.append(answer)
            return answer.has_access

        receipt = usage.consume(record, admit, offline=self._offline())
        if not answers:  # a retry of a consumption already enqueued
            admit(None)
        return Consumption(receipt is not None, answers[-1], receipt)

    def enqueue(self, records: list[UsageRecord]) -> list[Receipt]:
        """Validated usage, durable in the outbox (all or none)."""
        self.usable()
        return self.parts.usage.enqueue(records, offline=self._offline())

    def _offline(self) -> bool:
        return self.parts.health.state is not ConnectionState.CONNECTED

    def admin(self, customer_id: str, call: Callable[[float], _T]) -> _T:
        """An admin call to Stigg (``call(timeout_s)``); the customer's snapshot is forgotten
        whatever Stigg did (it may now be wrong)."""
        self.usable()
        try:
            return call(self.parts.options.fetch_timeout)
        finally:
            self.parts.cache.invalidate(customer_id, None)

    def status(self) -> Status:
        """``ResilientClient.status``."""
        self.usable()
        parts = self.parts
        health, faults, flusher, watcher = (
            parts.health,
            parts.faults,
            parts.usage.flusher,
            parts.watcher,
        )
        outbox, policy = parts.usage.stats(), parts.policy.current
        return Status(
            state=health.state,
            since=health.since,
            last_error=health.last_error,
            breaker=health.breaker_state.value,
            adapter=parts.adapter.name,
            store=parts.store.name,
            store_healthy=health.store_error is None,
            store_error=health.store_error,
            snapshots_held=parts.cache.count(),
            snapshots_in_memory=parts.cache.l1_size,
            policy_version=policy.version,
            policy_source=policy.source,
            policy_error=None if watcher is None else watcher.error,
            outbox_depth=outbox.pending,
            outbox_oldest_at=outbox.oldest_pending_at,
            dead_letters=outbox.dead_letters,
            faults=dict(faults.counts),
            outbox_error=outbox.problem or flusher.fault,
            signing=parts.store.signing,
            tamper_detections=faults.counts["stigg_cache.snapshot_tampered"],
            auth_error=flusher.auth_error or health.auth_error,
            sending_resumes_at=flusher.resumes_at(),
            namespace=parts.namespace,
            pacing=flusher.pacing(),
        )

    # -- lifecycle ------------------------------------------------------------------

    def _renew(self) -> None:
        """In a forked child, before anything runs: background work restarts on first use.

        Each part renews its own process state (connections, locks, flights); the
        fast path answers nothing until :meth:`resume` has run, so the first check
        of the child, warm or not, goes through it.
        """
        self.forked = True
        self.parts.warm.suspend()

    def usable(self) -> None:
        """Before any use: refused once closed; resumed first in a forked child.

        Raises:
            ClientClosedError: :meth:`close` has run.
        """
        if self.closed:
            raise ClientClosedError(
                f"this client ({self.parts.store.name}) is closed: build a new one to use it again"
            )
        if self.forked:
            self.resume()

    def resume(self) -> None:
        """First use in a forked child: the flusher and the policy watcher of this process."""
        self.forked = False
        if self.closed:
            return
        parts = self.parts
        parts.usage.flusher.start()
        if parts.watcher is not None:
            parts.watcher.start()
        parts.warm.resume()

    def close(self) -> None:
        """Stop background work and release what was opened here (never the user's own)."""
        if self.closed:
            return
        self.closed = True
        parts = self.parts
        parts.warm.suspend()  # the fast path answers nothing: every check is refused
        parts.reconciler.close()
        parts.journal.close()  # before the outbox it is kept in
        parts.usage.close()
        parts.fetcher.close()
        if parts.watcher is not None:
            parts.watcher.close()
        parts.adapter.close()
        if parts.owns_outbox:
            parts.outbox.close()
        if parts.store.owned:
            parts.cache.store.close()


__all__ = [  # the defaults of every option, in one place (the client's signature shows them)
    "DEFAULT_CHECK_TIMEOUT_S",
    "DEFAULT_FETCH_CONCURRENCY",
    "DEFAULT_FETCH_TIMEOUT_S",
    "DEFAULT_L1_MAX_BYTES",
    "DEFAULT_L1_MAX_ENTRIES",
    "DEFAULT_LEASE_S",
    "DEFAULT_OUTBOX_MAX_RECORDS",
    "DEFAULT_SETTLE_S",
    "EVENTS_PER_SECOND",
    "RECONCILE_TIMEOUT_S",
    "USAGE_CALLS_PER_MINUTE",
    "DecisionHook",
    "Options",
    "Parts",
    "Runtime",
    "build",
]
