"""The decision walk's driver: the I/O each state of :mod:`stigg_cache.core.walk` needs.

The walk decides; this module reads L1 and the store, asks Stigg within the
check's budget, drops an entry that does not parse, and does what follows an
answer: a refresh behind it, the default's log line, the journal of offline
decisions, the fast path's memo. ``ResilientClient`` loops :meth:`Walker.step`
until the walk has answered; ``AsyncResilientClient`` drives the same steps, on
the event loop or on a thread as each state's ``io`` says.
"""

from __future__ import annotations

from typing import Protocol, assert_never

from stigg_cache._engine.breaker import Health
from stigg_cache._engine.fastpath import FastPath
from stigg_cache._engine.fetcher import Fetcher
from stigg_cache._engine.journal import HostJournal
from stigg_cache._engine.ledger import UsageService
from stigg_cache._support.clock import Clock
from stigg_cache._support.log import FaultLog, shown
from stigg_cache.core import walk
from stigg_cache.core.engine import CheckRequest
from stigg_cache.models import AnyEntitlement, Snapshot
from stigg_cache.policy.model import PolicyRef
from stigg_cache.stores.layered import SnapshotCache
from stigg_cache.stores.monitored import StoreFault

Answer = tuple[AnyEntitlement | Snapshot, walk.Judgement]


class Host(Protocol):
    """What the walker reads of the client it serves (the runtime is one)."""

    @property
    def clock(self) -> Clock:
        """The client's clock."""

    @property
    def check_timeout_s(self) -> float:
        """Seconds a check may wait on the network, ever."""

    def usable(self) -> None:
        """Before any use: refused once closed; resumed first in a forked child."""

    def store_fault(self, fault: StoreFault, error: Exception | None) -> None:
        """A store fault to log, count and show."""


class Walker:
    """Drives walks for one client; counts its offline decisions in the host's journal."""

    def __init__(  # noqa: PLR0917 - the parts a walk's I/O touches, each once
        self,
        host: Host,
        policy: PolicyRef,
        cache: SnapshotCache,
        fetcher: Fetcher,
        health: Health,
        usage: UsageService,
        warm: FastPath,
        faults: FaultLog,
        journal: HostJournal,
    ) -> None:
        self._host = host
        self._policy = policy
        self._cache = cache
        self._fetcher = fetcher
        self._health = health
        self._usage = usage
        self._warm = warm
        self._faults = faults
        self._clock = host.clock
        self.journal = journal

    def walked(self, question: walk.Question, *, at: float | None = None) -> Answer:
        """The answer to a question, and how to judge it again with other local usage."""
        state = self.begin(question)
        while not isinstance(state, walk.Answered):
            state = self.step(state)
        return self.finish(state, at=at)

    def begin(self, question: walk.Question) -> walk.State:
        """The walk's first state, with the policy in force and Stigg's health now."""
        host = self._host
        host.usable()
        return walk.begin(
            question,
            self._policy.current,  # the walk keeps the policy it started with
            started=self._clock.monotonic(),
            check_timeout_s=host.check_timeout_s,
            offline=self._health.offline,
            last_error=self._health.last_error,
            usage_read=self._usage.known(question.customer_id, question.resource_id),
        )

    def step(self, state: walk.State) -> walk.State:
        """The I/O a state needs, and the state it leads to."""
        scope = state.walk.scope
        match state:
            case walk.ReadMemory():
                return state.held(self._cache.peek(scope), self._now())
            case walk.ReadStore():
                return state.held(self._cache.get(*scope), self._now())
            case walk.ReadNewer():
                return state.held(self._cache.newer(scope), self._now())
            case walk.Unusable():
                self._cache.invalidate(*scope)
                self._host.store_fault(StoreFault.ENTRY_UNUSABLE, state.error)
                return state.dropped(self._now())
            case walk.Fetch():
                return state.fetched(self._fetcher.fetch(scope, state.within_s), self._now())
            case walk.Answered():
                return state
            case _:
                assert_never(state)

    def finish(
        self, state: walk.Answered, *, blocking: bool = True, at: float | None = None
    ) -> Answer:
        """What follows an answer: the memo, a refresh behind it, the default's log, the
        journal (at ``at``, wall time, or now); then the answer, judged with the host's
        local usage.

        ``blocking=False`` (a state whose ``io`` is memory, on an event loop): the
        shared outbox is followed on a thread of its own when due, never here.
        """
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
        local_usage = self._usage.local_usage if blocking else self._usage.local_usage_now
        answer = state.judgement.answer(local_usage)
        if state.journal and isinstance(question, CheckRequest) and answer.decision is not None:
            granted = not isinstance(answer, Snapshot) and answer.has_access
            used = getattr(answer, "current_usage", None)  # the usage the answer counted
            when = self._clock.time() if at is None else at
            self.journal.record(when, question, answer.decision.source, granted, used)
        return answer, state.judgement

    def _now(self) -> walk.Now:
        return walk.Now(self._clock.monotonic(), self._clock.time())
