"""The fast path of warm checks: the decision walk's CACHE answers, kept on L1's entries.

It is a memo, not a second walk: when the walk (:mod:`stigg_cache.core.walk`)
answers CACHE for a check of a kind the fast path serves, it prepares that
answer (:class:`~stigg_cache.core.walk.Memo`) and the client keeps it here, on
the snapshot's L1 entry. The next checks of that shape cost a lookup, a
freshness compare and two small allocations (the decision and the result).
Anything else (no memo, stale data, another policy, an argument to validate)
returns ``None`` and the walk answers instead.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar

import attrs

from stigg_cache.core import engine
from stigg_cache.core.assemble import assembler
from stigg_cache.core.engine import CheckKind
from stigg_cache.core.ledger import LocalUsage, TallyKey, UsageLedger
from stigg_cache.core.terms import Budgets, CachedSnapshot, ScopeKey
from stigg_cache.core.walk import CACHE_DECISION, Memo
from stigg_cache.models import (
    BooleanEntitlement,
    Decision,
    Entitlement,
    EnumEntitlement,
    MeteredEntitlement,
    NumericEntitlement,
)
from stigg_cache.policy.model import PolicyRef
from stigg_cache.stores.layered import PREPARED_FEATURE_BYTES, PREPARED_KIND_BYTES

MAX_WARM_FEATURES = 512  # features per snapshot with prepared answers (bounds memory)
# Prepared answers sit in a list per feature, one slot per check kind (ints: enum hashing
# runs Python code, too slow for the hot path).
_JUDGED_FIELDS = ("has_access", "access_denied_reason")  # with the decision: what a check sets
KINDS = tuple(CheckKind)  # by slot
SLOT = {kind: index for index, kind in enumerate(KINDS)}
E = TypeVar("E", bound=BooleanEntitlement)  # every entitlement result is one


class Kind(int, Generic[E]):
    """A check kind as the clients ask it: the walk's ``check`` kind and the type it
    answers (``result``). The int itself is the kind's slot in the fast path's lists, so
    the hot path indexes with it at no cost, and its answer's type is known statically."""

    check: CheckKind
    result: type[E]

    def __new__(cls, check: CheckKind, result: type[E]) -> Kind[E]:
        kind = super().__new__(cls, SLOT[check])
        kind.check, kind.result = check, result
        return kind

    def __repr__(self) -> str:
        return f"Kind({self.check.name})"


BOOLEAN = Kind(CheckKind.BOOLEAN, BooleanEntitlement)
NUMERIC = Kind(CheckKind.NUMERIC, NumericEntitlement)
METERED = Kind(CheckKind.METERED, MeteredEntitlement)
ENUM = Kind(CheckKind.ENUM, EnumEntitlement)
GENERIC = Kind(CheckKind.GENERIC, Entitlement)
KIND_OF: dict[CheckKind, Kind[Any]] = {
    k.check: k for k in (BOOLEAN, NUMERIC, METERED, ENUM, GENERIC)
}
_DECIDED = CACHE_DECISION  # a module global: faster than the attribute on the hot path
_INF = float("inf")
_NUMBERS = (int, float)
_monotonic = time.monotonic  # the clock of UsageView.next_sync


@attrs.frozen
class Judged:
    """The last judgement of a prepared answer with local usage: it holds while the
    ledger's ``generation`` and the amount ``requested`` are the same (and no read of
    the shared outbox is due)."""

    generation: int
    requested: float
    used: float
    has_access: bool
    reason: Any


_NOT_JUDGED = Judged(-1, math.nan, math.nan, has_access=False, reason=None)


@attrs.frozen
class Prepared:
    """A CACHE answer of the walk, kept on its L1 entry for checks shaped like it.

    ``make(decision)``: the answer as prepared. ``judge(has_access, reason, decision,
    used, requested)``: the answer judged again with usage (every other field fixed).
    ``judged``: one cell, the last :class:`Judged`, replaced whole (one atomic store).
    """

    fresh_until: float  # time.monotonic() after which the walk answers again
    policy: Budgets  # the policy it was made for: with another in force, the walk answers
    make: Callable[[Decision], Any]
    answer: engine.WarmAnswer
    judge: Callable[..., Any]
    usage_scope: TallyKey  # the customer, resource and feature of its local usage
    judged: list[Judged]
    plain: bool  # no usage in it: made as prepared unless an amount is requested


class UsageView(Protocol):
    """Local usage as the fast path reads it."""

    ledger: UsageLedger  # its ``generation`` says whether a judgement still holds
    next_sync: float  # time.monotonic() at which the view must be read again

    def local_usage(
        self,
        scope: TallyKey,
        snapshot_fetched_at: float | None,
        floor: float | None,
        snapshot_usage: float | None,
    ) -> LocalUsage | None:
        """Usage to add for ``scope`` given the snapshot in hand."""


class FastPath:
    """Answers warm checks from L1 with the policy in force (``policy.current``)."""

    def __init__(
        self,
        l1: OrderedDict[ScopeKey, CachedSnapshot],
        policy: PolicyRef,
        *,
        monotonic: Callable[[], float],
        wall: Callable[[], float],
        usage: UsageView,
        grew: Callable[[ScopeKey, CachedSnapshot, int], None],
    ) -> None:
        """``grew(scope, entry, bytes)``: an entry holds more (a prepared answer), for
        L1's byte budget."""
        self.l1 = self._held = l1  # l1: what answers (nothing while suspended)
        self.grew = grew
        self.policy = policy
        self.monotonic = monotonic
        self.wall = wall
        self.usage = usage

    def suspend(self) -> None:
        """Answer nothing until :meth:`resume` (a forked child: its first check walks)."""
        self.l1 = OrderedDict()

    def resume(self) -> None:
        """Answer from L1 again."""
        self.l1 = self._held

    def answer(  # noqa: PLR0911 - a fast path is a row of early exits
        self,
        slot: Kind[E],
        customer_id: object,
        feature_id: object,
        resource_id: object,
        requested: object = None,
    ) -> E | None:
        """The fast path: a CACHE answer from L1 with no lock, no I/O and two allocations.

        Returns ``None`` whenever anything needs the full path (a miss, a stale
        snapshot, an argument to validate); the full path then answers.
        """
        if type(customer_id) is not str or type(feature_id) is not str:
            return None
        if resource_id is not None and type(resource_id) is not str:
            return None
        if requested is not None and not (type(requested) in _NUMBERS and 0 <= requested < _INF):  # type: ignore[operator]
            return None
        scope = (customer_id, resource_id)
        entry = self.l1.get(scope)
        if entry is None:
            return None
        entry.referenced = True  # for L1's eviction sweep (CLOCK): one store, no lock
        policy = self.policy.current  # read once: a reload sets memos of the old one aside
        slots = entry.warm.get(feature_id)  # keyed by str, then a list: no tuple or enum hashing
        prepared: Prepared | None = None if slots is None else slots[slot]
        if prepared is None or prepared.policy is not policy:
            return None  # the walk answers, and leaves its CACHE answer here
        now = self.monotonic()
        if now > prepared.fresh_until:
            return None
        decision = _DECIDED(now - entry.fetched_mono, policy.version)
        if requested is None and prepared.plain:
            make = prepared.make  # an attribute, then a call: a method lookup costs more
            return make(decision)  # type: ignore[no-any-return]
        return self._with_usage(entry, prepared, decision, requested)  # type: ignore[arg-type,no-any-return]

    def _with_usage(
        self,
        entry: CachedSnapshot,
        prepared: Prepared,
        decision: Decision,
        requested: float | None,
    ) -> Any:
        """The fast path's answer when usage (local or requested) is part of it."""
        answer, judge = prepared.answer, prepared.judge
        amount = engine.DEFAULT_REQUESTED_USAGE if requested is None else float(requested)
        terms = answer.usage
        if terms is None:
            fields = answer.fields
            has_access, reason = fields["has_access"], fields["access_denied_reason"]
            used = fields.get("current_usage")
        else:
            usage, judged = self.usage, prepared.judged
            generation = usage.ledger.generation
            last = judged[0]
            if (
                last.generation == generation
                and last.requested == amount
                and _monotonic() < usage.next_sync
            ):
                used, has_access, reason = last.used, last.has_access, last.reason  # unchanged
            else:
                used = terms.base_usage
                local = usage.local_usage(
                    prepared.usage_scope, entry.snapshot.fetched_at, answer.floor, used
                )
                complete = True
                if local is not None:  # LocalUsage.applied_to, inlined
                    used = (used if local.absolute is None else local.absolute) + local.delta
                    complete = local.complete
                has_access, reason = terms.judge(used, amount, complete=complete)
                judged[0] = Judged(generation, amount, used, has_access, reason)  # one store
        if answer.result_type is MeteredEntitlement:
            return judge(has_access, reason, decision, used, amount)
        shown = None if requested is None else float(requested)
        return judge(has_access, reason, decision, used, shown)

    def keep(self, memo: Memo, policy: Budgets) -> None:
        """Keep a CACHE answer of the walk on its L1 entry (at most ``MAX_WARM_FEATURES``
        features a snapshot), counted in L1's byte budget."""
        request, entry, answer = memo.request, memo.entry, memo.answer
        make, judge = _makers(answer)
        prepared = Prepared(
            answer.fresh_until_mono,
            policy,
            make,
            answer,
            judge,
            (request.customer_id, request.resource_id, request.feature_id),
            [_NOT_JUDGED],
            plain=answer.usage is None,
        )
        slots = entry.warm.get(request.feature_id)
        added = PREPARED_KIND_BYTES
        if slots is None and len(entry.warm) < MAX_WARM_FEATURES:
            slots = entry.warm[request.feature_id] = [None] * len(SLOT)
            added = PREPARED_FEATURE_BYTES
        if slots is not None:
            if slots[SLOT[request.kind]] is None:
                self.grew((request.customer_id, request.resource_id), entry, added)
            slots[SLOT[request.kind]] = prepared


def _makers(answer: engine.WarmAnswer) -> tuple[Callable[[Decision], Any], Callable[..., Any]]:
    """Constructors of the prepared result, taking positional arguments (cheaper than keywords).

    ``make(decision)``: the answer as prepared. ``judged(has_access, reason,
    decision, current_usage, requested_usage)``: the answer judged again with
    usage; every field but those is fixed (results that show no usage drop the two).
    """
    fields = answer.fields
    make = assembler(answer.result_type, **fields)
    judged = {name: value for name, value in fields.items() if name not in _JUDGED_FIELDS}
    if "current_usage" not in fields:
        judge = assembler(answer.result_type, **judged)

        def judged_without_usage(
            has_access: bool, reason: Any, decision: Decision, *_: float | None
        ) -> Any:
            return judge(has_access, reason, decision)

        return make, judged_without_usage
    del judged["current_usage"], judged["requested_usage"]
    return make, assembler(answer.result_type, **judged)
