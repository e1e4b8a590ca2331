"""The composition root: what a client is made of, built from its options, closed together.

:class:`~stigg_cache.ResilientClient` is the public face; its parts are built
here, in order: the policy (and its watcher), the adapter, the store (signed if
keys are given), the outbox beside it, health, the snapshot cache, the fetcher,
the usage service, the fast path, the walk's driver and the reconciler. Plain
arguments are validated before anything opens, and whatever was opened or
started is closed again if a later step fails: a constructor that raises
leaves no thread, connection or file behind.
"""

from __future__ import annotations

import contextlib
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
from stigg_cache.policy.model import BUILTIN_POLICY, FallbackPolicy
from stigg_cache.policy.rules import plans_unmatchable
from stigg_cache.policy.watcher import PolicyWatcher
from stigg_cache.stores import Store, default_store_url, open_store
from stigg_cache.stores.layered import (
    DEFAULT_L1_MAX_BYTES,
    DEFAULT_L1_MAX_ENTRIES,
    SnapshotCache,
    StoreFault,
)
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


class Runtime:
    """A client's parts, wired: the client asks them, and they call each other here."""

    def __init__(self, inner: object, options: Options) -> None:
        self.options = options
        self.clock = clock = options.clock
        self.check_timeout_s = options.check_timeout
        self.faults = FaultLog(clock)
        self.health = Health(options.breaker or CircuitBreaker(), clock, self.faults)
        self.forked = False
        self.environment = environment_of(inner, options.api_key, options.base_url)
        self.namespace = options.namespace or self.environment
        with contextlib.ExitStack() as undo:
            self.watcher, self.policy = self._policy(options.policy, undo)
            self.adapter: Adapter = adapt(
                inner,
                api_key=options.api_key,
                base_url=options.base_url,
                fetch_timeout_s=options.fetch_timeout,
            )
            undo.callback(self.adapter.close)
            self._plans_warned = False
            self._warn_of_plans(self.policy)
            self.cache = self._cache(undo)
            self.outbox = self._outbox(undo)
            self.fetcher, self.usage = self._fetcher(), self._usage()
            undo.callback(self.fetcher.close)
            undo.callback(self.usage.close)
            self.warm = FastPath(
                self.cache.l1,
                self.policy,
                monotonic=clock.monotonic,
                wall=clock.time,
                usage=self.usage,
                grew=self.cache.grew,
            )
            self.journal = HostJournal(self.outbox, self.faults)
            undo.callback(self.journal.close)
            self.walker = Walker(
                self,
                self.cache,
                self.fetcher,
                self.health,
                self.usage,
                self.warm,
                self.faults,
                self.journal,
            )
            self.checks = Checks(self.warm, self.walker.walked, self.faults)
            self.reconciler = Reconciler(
                self.journal,
                self.usage,
                self.fetcher,
                clock,
                self.faults,
                fetch_timeout_s=options.fetch_timeout,
                reads_per_minute=options.reads_per_minute or EDGE_READS_PER_MINUTE,
            )
            self.health.subscribe(self.on_state_change)
            self.usage.flusher.probe_with(self.fetcher.probe)  # idle, it still learns of Stigg
            undo.pop_all()  # built: close() releases them from now on
        self.closed = False
        fork.renew_after_fork(self, Runtime._renew)

    # -- building ---------------------------------------------------------------------

    def _policy(
        self, given: FallbackPolicy | str | os.PathLike[str] | None, undo: contextlib.ExitStack
    ) -> tuple[PolicyWatcher | None, FallbackPolicy]:
        """The policy in force, and the watcher that reloads it (a path given)."""
        if not isinstance(given, str | os.PathLike):
            return None, given or BUILTIN_POLICY
        watcher = PolicyWatcher(given, on_reload=self.use_policy)
        undo.callback(watcher.close)
        return watcher, watcher.current

    def _cache(self, undo: contextlib.ExitStack) -> SnapshotCache:
        """The snapshot cache over the store (signed if keys are given)."""
        options = self.options
        given = options.store
        self.owns_store = not isinstance(given, Store)
        keys = signing_keys(options.signing_key)
        if isinstance(given, Store):
            self.store_url, opened = "", given
        else:
            self.store_url = default_store_url(self.namespace) if given is None else str(given)
            opened = open_store(self.store_url)
            undo.callback(opened.close)
        self.store_name = redact(self.store_url) if self.owns_store else repr(opened)
        space = self._space(given is not None)
        self.signing = f"hmac-sha256, {len(keys)} key(s)" if keys else None
        if keys:
            opened = SignedStore(opened, keys)
        elif scheme_of(self.store_url) not in _LOCAL_SCHEMES:
            logger.warning(
                "stigg_cache.unsigned_shared_store: %s is shared over the network and its "
                "snapshots are not signed: anyone who can write to it can grant features; "
                "set signing_key= (or %s)",
                self.store_name,
                ENV_SIGNING_KEY,
                extra={"event": "stigg_cache.unsigned_shared_store"},
            )
        store_max_bytes = options.store_max_bytes
        if store_max_bytes is None and self.owns_store:
            store_max_bytes = default_store_max_bytes(self.store_url)
        return SnapshotCache(
            opened,
            self.clock,
            self.store_fault,
            options.l1_max_entries,
            options.l1_max_bytes,
            keep_for=lambda: self.policy.keep_snapshots_s,
            on_held=lambda scope: self.usage.read_customer(*scope),
            store_max_bytes=store_max_bytes,
            space=space,
        )

    def _space(self, explicit: bool) -> str:
        """The prefix of this client's snapshot keys: none in its own store; its namespace in
        a file store another environment used first (DESIGN §11)."""
        scheme = scheme_of(self.store_url)
        if not explicit or not self.owns_store or scheme not in ("sqlite", "disk"):
            return ""
        owner = owned_by_another(path_from_url(self.store_url, scheme), self.namespace)
        if owner is None:
            return ""
        self._kept_apart(self.store_name, owner, "its snapshots under keys of its own")
        self.store_name += f" (keys of {self.namespace})"
        return f"{self.namespace}:"

    def _kept_apart(self, name: str, owner: str, where: str) -> None:
        logger.info(
            "stigg_cache.environment_apart: %s belongs to environment %s; this client "
            "(environment %s) keeps %s",
            name,
            owner,
            self.namespace,
            where,
            extra={"event": "stigg_cache.environment_apart"},
        )

    def _outbox(self, undo: contextlib.ExitStack) -> Outbox:
        """The outbox given, else one beside the store this client opened."""
        given = self.options.outbox
        self.owns_outbox = not isinstance(given, Outbox)
        if isinstance(given, Outbox):
            return given
        beside = self.store_url if self.owns_store else None
        url = given or default_outbox_url(beside, self.namespace)
        if scheme_of(url) == "sqlite" and (given or self.options.store is not None):
            url = self._own_outbox(url)
        opened = open_outbox(
            url,
            # the environment, not the namespace: one namespace= shared by two is caught
            environment=None if self.environment == DEFAULT_NAMESPACE else self.environment,
        )
        undo.callback(opened.close)
        return opened

    def _own_outbox(self, url: str) -> str:
        """A SQLite outbox named by the user (or beside their store): this environment's,
        or, another's first, a file of its own beside it (usage never sent with their key)."""
        path = path_from_url(url, "sqlite")
        owner = owned_by_another(path, self.namespace)
        if owner is None:
            return url
        own = f"sqlite:///{apart_from(path, self.namespace)}"
        self._kept_apart(redact(url), owner, f"its usage in {redact(own)}")
        return own

    def _fetcher(self) -> Fetcher:
        options = self.options
        reads = options.reads_per_minute or reads_per_minute_of(self.adapter)
        return Fetcher(
            self.adapter,
            self.cache,
            self.health,
            self.clock,
            check_timeout_s=options.check_timeout,
            fetch_timeout_s=options.fetch_timeout,
            concurrency=options.fetch_concurrency,
            reads=read_budget(self.outbox, reads),
        )

    def _usage(self) -> UsageService:
        options = self.options
        return UsageService(
            self.outbox,
            self.adapter,
            self.health,
            self.clock,
            lambda: self.policy,
            settle_s=options.settle_s,
            events_per_second=options.events_per_second,
            usage_calls_per_minute=options.usage_calls_per_minute,
            lease_s=options.outbox_lease_s,
            max_records=options.outbox_max_records,
        )

    # -- wiring -------------------------------------------------------------------

    def use_policy(self, policy: FallbackPolicy) -> None:
        """A reloaded policy: one reference swap each (checks in flight keep the old one)."""
        self.policy = policy
        self.warm.use(policy)
        self._warn_of_plans(policy)

    def _warn_of_plans(self, policy: FallbackPolicy) -> None:
        """Once per client: rules on ``plans:`` that this client's answers cannot match."""
        if self._plans_warned or knows_plans(self.adapter):
            return
        warning = plans_unmatchable(policy.rules, f"the {self.adapter.name} client")
        if warning is not None:
            self._plans_warned = True
            logger.warning(
                "stigg_cache.plans_unknown: %s",
                warning,
                extra={"event": "stigg_cache.plans_unknown"},
            )

    def store_fault(self, fault: StoreFault, error: Exception | None) -> None:
        """A store failed (logged once, counted, in status) or works again (``None``)."""
        if error is None:
            self.health.store_fault(None)
            return
        self.faults.report(f"stigg_cache.{fault.value}", str(error), key=fault.value)
        if fault.store_unhealthy:  # not a bad entry, nor a lease the store was too busy for
            self.health.store_fault(f"{fault.value}: {error}")

    def on_state_change(self, old: ConnectionState, new: ConnectionState) -> None:
        """Stigg is back: send what waits, and reconcile what was decided without it."""
        if new is ConnectionState.CONNECTED and old is not ConnectionState.CONNECTED:
            self.usage.flusher.wake()
            self.reconciler.run_in_background(RECONCILE_TIMEOUT_S)

    # -- what the client asks of it -----------------------------------------------------

    def consume(self, request: CheckRequest, record: UsageRecord) -> Consumption:
        """``ResilientClient.consume``: judged once outside the outbox's transaction (the
        walk may fetch), then again inside it with every process's usage."""
        # Journaled at the usage's stamp: its own units are reported at or after it.
        _, judgement = self.walker.walked(request, at=record.stamped_at)  # refused once closed
        answers: list[MeteredEntitlement] = []

        def admit(share: HeadroomShare | None) -> bool:
            answer = judgement.answer(self.usage.local_usage_now)  # incomplete: denied
            assert isinstance(answer, MeteredEntitlement)
            answer = within_share(answer, record.value, share)
            answers.append(answer)
            return answer.has_access

        receipt = self.usage.consume(record, admit, offline=self._offline())
        if not answers:  # a retry of a consumption already enqueued
            admit(None)
        return Consumption(receipt is not None, answers[-1], receipt)

    def enqueue(self, records: list[UsageRecord]) -> list[Receipt]:
        """Validated usage, durable in the outbox (all or none)."""
        self.usable()
        return self.usage.enqueue(records, offline=self._offline())

    def _offline(self) -> bool:
        return self.health.state is not ConnectionState.CONNECTED

    def admin(self, customer_id: str, call: Callable[[float], _T]) -> _T:
        """An admin call to Stigg (``call(timeout_s)``); the customer's snapshot is forgotten
        whatever Stigg did (it may now be wrong)."""
        self.usable()
        try:
            return call(self.options.fetch_timeout)
        finally:
            self.cache.invalidate(customer_id, None)

    def status(self) -> Status:
        """``ResilientClient.status``."""
        self.usable()
        health, faults, flusher = self.health, self.faults, self.usage.flusher
        outbox = self.usage.stats()
        return Status(
            state=health.state,
            since=health.since,
            last_error=health.last_error,
            breaker=health.breaker_state.value,
            adapter=self.adapter.name,
            store=self.store_name,
            store_healthy=health.store_error is None,
            store_error=health.store_error,
            snapshots_held=self.cache.count(),
            snapshots_in_memory=self.cache.l1_size,
            policy_version=self.policy.version,
            policy_source=self.policy.source,
            policy_error=None if self.watcher is None else self.watcher.error,
            outbox_depth=outbox.pending,
            outbox_oldest_at=outbox.oldest_pending_at,
            dead_letters=outbox.dead_letters,
            faults=dict(faults.counts),
            outbox_error=outbox.problem or flusher.fault,
            signing=self.signing,
            tamper_detections=faults.counts["stigg_cache.snapshot_tampered"],
            auth_error=flusher.auth_error or health.auth_error,
            sending_resumes_at=flusher.resumes_at(),
            namespace=self.namespace,
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
        self.warm.suspend()

    def usable(self) -> None:
        """Before any use: refused once closed; resumed first in a forked child.

        Raises:
            ClientClosedError: :meth:`close` has run.
        """
        if self.closed:
            raise ClientClosedError(
                f"this client ({self.store_name}) is closed: build a new one to use it again"
            )
        if self.forked:
            self.resume()

    def resume(self) -> None:
        """First use in a forked child: the flusher and the policy watcher of this process."""
        self.forked = False
        if self.closed:
            return
        self.usage.flusher.start()
        if self.watcher is not None:
            self.watcher.start()
        self.warm.resume()

    def close(self) -> None:
        """Stop background work and release what was opened here (never the user's own)."""
        if self.closed:
            return
        self.closed = True
        self.warm.suspend()  # the fast path answers nothing: every check is refused
        self.reconciler.close()
        self.journal.close()  # before the outbox it is kept in
        self.usage.close()
        self.fetcher.close()
        if self.watcher is not None:
            self.watcher.close()
        self.adapter.close()
        if self.owns_outbox:
            self.outbox.close()
        if self.owns_store:
            self.cache.store.close()


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
    "Runtime",
]
