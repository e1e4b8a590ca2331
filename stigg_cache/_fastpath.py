"""The fast path of warm checks: prepared CACHE answers from L1, no lock, no I/O.

For each snapshot, feature and check kind, the answer is computed once by the
same engine the full path uses (:func:`~stigg_cache.core.engine.warm_answer`)
and kept with the snapshot; a check then costs a lookup, a freshness compare
and two small allocations (the decision and the result). Anything unusual (a
miss, stale data, an argument to validate, local usage to re-judge past its
shortcut) returns ``None`` and the client's full path answers instead.
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, cast

import attrs

from stigg_cache.core import engine
from stigg_cache.core.engine import CheckKind, CheckRequest
from stigg_cache.core.ledger import LocalUsage, TallyKey
from stigg_cache.errors import InvalidResponseError
from stigg_cache.models import AnyEntitlement, Decision, MeteredEntitlement, Source
from stigg_cache.policy.model import FallbackPolicy
from stigg_cache.stores.layered import CachedSnapshot, ScopeKey

MAX_WARM_FEATURES = 512  # features per snapshot with prepared answers (bounds memory)
# Prepared answers sit in a list per feature, one slot per check kind (ints: enum hashing
# runs Python code, too slow for the hot path).
_LEADING_FIELDS = ("customer_id", "feature_id", "resource_id", "has_access", "access_denied_reason")
_KINDS = tuple(CheckKind)
SLOT = {kind: index for index, kind in enumerate(_KINDS)}
SLOT_BOOLEAN, SLOT_NUMERIC, SLOT_METERED = (
    SLOT[CheckKind.BOOLEAN],
    SLOT[CheckKind.NUMERIC],
    SLOT[CheckKind.METERED],
)
SLOT_GENERIC = SLOT[CheckKind.GENERIC]
_CACHE = Source.CACHE  # a module global: faster than the enum attribute on the hot path
_INF = float("inf")
_NUMBERS = (int, float)

# (scope, the snapshot's fetched_at, the usage period's floor, the usage the snapshot shows)
LocalUsageOf = Callable[[TallyKey, float | None, float | None, float | None], LocalUsage | None]
# (fresh until, policy it was made for, make(decision), answer, make with usage, middle,
#  the customer+resource+feature of local usage)
Prepared = tuple[
    float,
    FallbackPolicy,
    Callable[..., Any],
    engine.WarmAnswer,
    Callable[..., Any],
    tuple[Any, ...] | None,
    TallyKey,
]


class FastPath:
    """Answers warm checks from L1; the client keeps ``policy`` current."""

    def __init__(
        self,
        l1: OrderedDict[ScopeKey, CachedSnapshot],
        policy: FallbackPolicy,
        *,
        monotonic: Callable[[], float],
        wall: Callable[[], float],
        local_usage: LocalUsageOf,
    ) -> None:
        self.l1 = l1
        self.policy = policy
        self.monotonic = monotonic
        self.wall = wall
        self.local_usage = local_usage

    def answer(  # noqa: PLR0911 - a fast path is a row of early exits
        self,
        slot: int,
        customer_id: object,
        feature_id: object,
        resource_id: object,
        requested: object = None,
    ) -> AnyEntitlement | None:
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
        try:  # noqa: SIM105 - cheaper than contextlib.suppress here
            self.l1.move_to_end(scope)  # LRU; atomic under the GIL
        except KeyError:  # evicted meanwhile: the entry in hand still answers
            pass
        policy = self.policy
        slots = entry.warm.get(feature_id)  # keyed by str, then a list: no tuple or enum hashing
        prepared = None if slots is None else slots[slot]
        if prepared is None or prepared[1] is not policy:
            request = CheckRequest(_KINDS[slot], customer_id, feature_id, scope[1])
            prepared = self._prepare(entry, request, policy)
            if prepared is None:
                return None
        now = self.monotonic()
        if now > prepared[0]:
            return None
        decision = Decision(_CACHE, now - entry.fetched_mono, False, None, policy.version)  # noqa: FBT003
        if prepared[3].usage is None and requested is None:
            return prepared[2](decision)  # type: ignore[no-any-return]
        return self._with_usage(entry, prepared, decision, cast("float | None", requested))

    def _with_usage(
        self,
        entry: CachedSnapshot,
        prepared: Prepared,
        decision: Decision,
        requested: float | None,
    ) -> AnyEntitlement:
        """The fast path's answer when usage (local or requested) is part of it."""
        answer, make, middle = prepared[3], prepared[4], prepared[5]
        fields = answer.fields
        amount = engine.DEFAULT_REQUESTED_USAGE if requested is None else float(requested)
        terms = answer.usage
        if terms is None:
            has_access, reason = fields["has_access"], fields["access_denied_reason"]
            used = fields.get("current_usage")
        else:
            used = terms.base_usage
            local = self.local_usage(prepared[6], entry.snapshot.fetched_at, answer.floor, used)
            if local is not None:  # LocalUsage.applied_to, inlined: runs on every metered check
                used = (used if local.absolute is None else local.absolute) + local.delta
            has_access, reason = terms.judge(used, amount)
        if middle is None:  # the result shows no usage
            return make(has_access, reason, decision)  # type: ignore[no-any-return]
        if answer.result_type is MeteredEntitlement:
            return make(has_access, reason, decision, *middle, used, amount)  # type: ignore[no-any-return]
        shown = None if requested is None else float(requested)
        return make(has_access, reason, decision, *middle, used, shown)  # type: ignore[no-any-return]

    def _prepare(
        self, entry: CachedSnapshot, request: CheckRequest, policy: FallbackPolicy
    ) -> Prepared | None:
        if entry.dated_in_future or not request.feature_id.strip():
            return None
        try:
            answer = engine.warm_answer(
                request,
                entry.snapshot,
                policy.staleness_for(request.feature_id),
                fetched_mono=entry.fetched_mono,
                now_wall=self.wall(),
                policy_version=policy.version,
            )
        except InvalidResponseError:
            return None  # the full path reports it and drops the entry
        usage_scope = (request.customer_id, request.resource_id, request.feature_id)
        prepared = (answer.fresh_until_mono, policy, *_makers(answer), usage_scope)
        slots = entry.warm.get(request.feature_id)
        if slots is None and len(entry.warm) < MAX_WARM_FEATURES:
            slots = entry.warm[request.feature_id] = [None] * len(SLOT)
        if slots is not None:
            slots[SLOT[request.kind]] = prepared
        return prepared


def _makers(
    answer: engine.WarmAnswer,
) -> tuple[Callable[..., Any], engine.WarmAnswer, Callable[..., Any], tuple[Any, ...] | None]:
    """Constructors of the prepared result, taking positional arguments (cheaper than keywords).

    Every result begins ``customer_id, feature_id, resource_id, has_access,
    access_denied_reason, decision``; results that show usage continue up to
    ``current_usage, requested_usage``. ``middle`` holds the fixed fields in between.
    """
    cls, fields = answer.result_type, answer.fields
    names = [field.name for field in attrs.fields(cls)]
    assert names[:6] == [*_LEADING_FIELDS, "decision"]
    if "current_usage" in fields:
        middle: tuple[Any, ...] | None = tuple(
            fields[n] for n in names[6 : names.index("current_usage")]
        )
        rest_from = names.index("requested_usage") + 1
    else:
        middle, rest_from = None, 6
    rest = {name: fields[name] for name in names[rest_from:]}
    after_decision = {name: fields[name] for name in names[6:]}
    leading = [fields[name] for name in _LEADING_FIELDS]
    return (
        functools.partial(cls, *leading, **after_decision),
        answer,
        functools.partial(cls, *leading[:3], **rest),
        middle,
    )
