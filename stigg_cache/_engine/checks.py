"""The check surface both clients ask: each kind's question and answer, written once.

A check is the fast path, else the decision walk, then the decision hooks told.
Only the walk waits (a store, Stigg), and only its driver differs between the
clients (:class:`~stigg_cache._engine.walk.Walker` loops it in the caller's thread;
``AsyncResilientClient`` keeps its memory steps on the event loop). So the rest
lives here once, below both, as httpx keeps what does not wait in one base of
``Client`` and ``AsyncClient``. Generating the sync client from the async one
(hishel's unasync) was the other way: it would copy every verb into a second
file to avoid writing one ten-line driver twice, and the generated copy would
pay for an extra call on the warm path, whose cost is a bench row.

:class:`~stigg_cache._engine.fastpath.Kind` says what each kind answers, so neither
client narrows an answer's type by hand.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Generic, Protocol

import attrs

from stigg_cache._engine.fastpath import E, FastPath, Kind
from stigg_cache._support.log import FaultLog
from stigg_cache.core import validate as check
from stigg_cache.core import walk
from stigg_cache.core.engine import CheckRequest
from stigg_cache.models import AnyEntitlement, Snapshot

# What a check answered, told after it: its kind ("boolean", ...), the answer (with its
# decision) and the seconds it took. Subscribed with ResilientClient.on_decision.
DecisionHook = Callable[[str, AnyEntitlement, float], None]


class FastAnswer(Protocol):
    """The fast path as the clients call it: ``None`` when the walk must answer."""

    def __call__(
        self,
        slot: Kind[E],
        customer_id: object,
        feature_id: object,
        resource_id: object,
        requested: object = None,
    ) -> E | None:
        """A CACHE answer from memory, or ``None``."""


@attrs.frozen
class Asked(Generic[E]):
    """A check the fast path did not answer: its kind, the walk's question, when asked."""

    kind: Kind[E]
    request: CheckRequest
    started: float


class Checks:
    """The checks of one client: its fast path, its questions, its decision hooks."""

    def __init__(
        self,
        warm: FastPath,
        walked: Callable[[walk.Question], tuple[AnyEntitlement | Snapshot, walk.Judgement]],
        faults: FaultLog,
    ) -> None:
        self._warm = warm
        self._walked = walked  # the walk driven in the caller's thread
        self._faults = faults
        self._hooks: tuple[DecisionHook, ...] = ()
        self._hooks_changed = threading.Lock()
        # Called on every check: the bare fast path, or while a hook listens, one that tells it
        self.fast: FastAnswer = warm.answer

    def asked(  # noqa: PLR0917 - a check's arguments, in the clients' order
        self,
        kind: Kind[E],
        customer_id: object,
        feature_id: object,
        resource_id: object,
        usage: object = None,
        values: object = None,
    ) -> Asked[E]:
        """The walk's question for a check (its arguments validated).

        Raises:
            ValueError / TypeError: an id, ``requested_usage`` or ``requested_values``.
        """
        started = time.perf_counter()
        request = check.check_request(
            kind.check, customer_id, feature_id, resource_id, usage, values
        )
        return Asked(kind, request, started)

    def ask(self, kind: Kind[E], *question: object) -> E:
        """A check the fast path did not answer, walked in this thread: ``question`` is
        :meth:`asked`'s (``customer_id, feature_id, resource_id[, usage[, values]]``)."""
        asked = self.asked(kind, *question)
        return self.answered(asked, self._walked(asked.request)[0])

    def answered(self, asked: Asked[E], answer: AnyEntitlement | Snapshot) -> E:
        """The walk's answer to ``asked``, as its kind's type, the hooks told."""
        assert isinstance(answer, asked.kind.result)  # the walk answers a check by its kind
        if self._hooks:
            self._told(asked.kind, answer, time.perf_counter() - asked.started)
        return answer

    def subscribe(self, hook: DecisionHook) -> Callable[[], None]:
        """``ResilientClient.on_decision``: tell ``hook`` every answer; returns an unsubscribe."""
        with self._hooks_changed:
            self._hooks = (*self._hooks, hook)
            self.fast = self._told_fast

        def unsubscribe() -> None:
            with self._hooks_changed:
                self._hooks = tuple(h for h in self._hooks if h is not hook)
                if not self._hooks:  # back to the bare fast path
                    self.fast = self._warm.answer

        return unsubscribe

    def _told_fast(
        self,
        slot: Kind[E],
        customer_id: object,
        feature_id: object,
        resource_id: object,
        requested: object = None,
    ) -> E | None:
        """The fast path, telling the hooks what it answered and how long it took."""
        started = time.perf_counter()
        answer = self._warm.answer(slot, customer_id, feature_id, resource_id, requested)
        if answer is not None:
            self._told(slot, answer, time.perf_counter() - started)
        return answer

    def _told(self, kind: Kind[E], answer: AnyEntitlement, seconds: float) -> None:
        """Tell every decision hook; one that raises is logged (never the check's failure)."""
        for hook in self._hooks:
            try:
                hook(kind.check.value, answer, seconds)
            except Exception:  # the caller's code
                self._faults.report("stigg_cache.hook_failed", repr(hook), key=repr(hook))
