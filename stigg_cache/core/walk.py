"""How a check is answered: the tiers of DESIGN §3 as the states of one walk (no I/O).

A walk starts with :func:`begin` and ends in :class:`Answered`. Every state in
between names the one piece of I/O its driver does, and takes the result to the
next state with a method of its own; drivers are loops over these states that
end in ``assert_never`` (``Walker.step``, looped by ``ResilientClient`` and awaited
state by state by ``AsyncResilientClient``). Each state's ``io`` says what that
step waits on (:class:`IO`: memory, a store, or Stigg), so the async driver keeps
the memory steps on the event loop and sends the others to a thread by type, as
hishel's driver does. A state is never changed once made;
it is a plain slotted class rather than a frozen one because a first check makes
five of them, and a frozen class's constructor costs three times as much.
Every :class:`~stigg_cache.models.Decision` is made here, for checks of one
feature and for ``get_entitlements`` alike::

    ReadMemory --held(entry)--> Answered CACHE      fresh: a memo for the fast path
                             -> ReadNewer           not fresh: has a sibling refreshed it?
                             -> Unusable            an entry that does not parse
                             -> ReadStore           nothing in memory
    ReadStore --held(entry)---> Answered CACHE      fresh (answers once before it is memoized)
                             -> ReadNewer / Unusable
                             -> Fetch               nothing held
    ReadNewer --held(newer)---> Answered CACHE      the sibling's is fresh
                             -> Answered STALE      within max_staleness (refresh behind, when due)
                             -> Unusable / Fetch    past max_staleness
    Unusable --dropped()------> Fetch               the entry is dropped and reported by the driver
    Fetch --fetched(result)---> Answered LIVE       Stigg answered within the check's budget
                             -> Answered STALE      get_entitlements: the features still in budget
                             -> Answered POLICY / DEFAULT   the fallback policy

What each step waits on: ReadMemory memory; ReadStore, ReadNewer and Unusable the
snapshot store; Fetch Stigg; Answered memory, or the shared outbox when its answer
needs local usage this process has not read yet (``Walk.usage_read``).
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable
from typing import ClassVar, TypeAlias

import attrs

from stigg_cache.core import engine
from stigg_cache.core.assemble import assembler
from stigg_cache.core.engine import CheckKind, CheckRequest, Freshness
from stigg_cache.core.ledger import LocalUsage, TallyKey
from stigg_cache.core.terms import Budgets, CachedSnapshot, Grant, ScopeKey, Staleness
from stigg_cache.errors import InvalidResponseError, StiggUnavailableError
from stigg_cache.models import AnyEntitlement, Decision, Snapshot, Source

_USAGE_KINDS = (CheckKind.METERED, CheckKind.GENERIC)
# Check kinds whose CACHE answer the fast path keeps (an enum check's values vary per call)
_MEMO_KINDS = (CheckKind.BOOLEAN, CheckKind.NUMERIC, CheckKind.METERED, CheckKind.GENERIC)

LocalUsageOf = Callable[[TallyKey, float | None, float | None, float | None], LocalUsage | None]


class IO(enum.Enum):
    """What the step out of a state waits on."""

    MEMORY = "memory"  # L1 and this process's counts: never blocks, stays on an event loop
    STORE = "store"  # the snapshot store, or the shared outbox (a file, a server): may block
    STIGG = "stigg"  # Stigg, within what is left of the check's budget


@attrs.frozen
class EveryFeature:
    """``get_entitlements``: every feature of a scope, each judged as its own check would be."""

    customer_id: str
    resource_id: str | None = None


Question: TypeAlias = CheckRequest | EveryFeature


@attrs.define
class Now:
    """The driver's clocks at a step: monotonic (ages) and wall (``validUntil``, periods)."""

    mono: float
    wall: float


@attrs.frozen
class UsageOf:
    """What local usage a judgement adds, asked as the usage service takes it: of which
    customer, resource and feature (``scope``), given the snapshot's fetch time, the usage
    period's floor and the usage the snapshot shows (all ``None`` for a policy's answer)."""

    scope: TallyKey
    snapshot_fetched_at: float | None
    floor: float | None
    snapshot_usage: float | None


@attrs.frozen
class Judgement:
    """An answer waiting for local usage: judging it again does no I/O.

    ``consume()`` judges a check once outside the outbox's transaction (which may
    fetch), then again inside it with every process's usage, before enqueueing.
    """

    make: Callable[[LocalUsage | None], AnyEntitlement | Snapshot]
    usage_of: UsageOf | None = None

    def answer(self, local_usage: LocalUsageOf) -> AnyEntitlement | Snapshot:
        """The answer given local usage as ``local_usage`` reports it for ``usage_of``."""
        of = self.usage_of
        if of is None:
            return self.make(None)
        return self.make(local_usage(of.scope, of.snapshot_fetched_at, of.floor, of.snapshot_usage))


@attrs.define
class Walk:
    """What stays the same along one walk: the question, the policy in force, when it
    started, its network budget, whether Stigg was unreachable (and why), and whether
    the local usage of its customer is all in memory (``usage_read``: no shared outbox,
    or this process has read the customer's from it)."""

    question: Question
    policy: Budgets
    started: float
    check_timeout_s: float
    offline: bool
    last_error: str | None
    usage_read: bool

    @property
    def scope(self) -> ScopeKey:
        """The customer and resource whose snapshot answers."""
        return (self.question.customer_id, self.question.resource_id)


@attrs.frozen
class Memo:
    """A CACHE answer of this walk, prepared for checks shaped like it: the fast path keeps
    it on the L1 entry and answers the next such checks from it until ``fresh_until``."""

    entry: CachedSnapshot
    request: CheckRequest
    answer: engine.WarmAnswer


@attrs.define
class Answered:
    """The end of a walk: the judgement, and what the driver does once it has answered.

    ``refresh``: ask Stigg again behind the answer (STALE while Stigg answers, due).
    ``journal``: a decision made while Stigg was unreachable, kept for reconciliation.
    ``default_allow``: why the built-in allow answered (logged once a minute per feature).
    ``grant``: the policy's grant, when the fallback answered.
    ``memo``: a CACHE answer for the fast path to keep.
    """

    walk: Walk
    judgement: Judgement
    refresh: bool = False
    journal: bool = False
    default_allow: str | None = None
    grant: Grant | None = None
    memo: Memo | None = None

    @property
    def io(self) -> IO:
        """Memory, unless the answer needs local usage not read from the shared outbox yet."""
        if self.judgement.usage_of is None or self.walk.usage_read:
            return IO.MEMORY
        return IO.STORE


@attrs.define
class ReadMemory:
    """Needs the snapshot L1 holds for the scope (``None``: none)."""

    io: ClassVar[IO] = IO.MEMORY
    walk: Walk

    def held(self, entry: CachedSnapshot | None, now: Now) -> State:
        """Answered CACHE (with a memo) if fresh; else ReadNewer; Unusable; ReadStore."""
        if entry is None:
            return ReadStore(self.walk)
        return _judged(self.walk, entry, now, newer_read=False, memo=True)


@attrs.define
class ReadStore:
    """Needs the snapshot the store holds for the scope (``None``: none)."""

    io: ClassVar[IO] = IO.STORE
    walk: Walk

    def held(self, entry: CachedSnapshot | None, now: Now) -> State:
        """Answered CACHE if fresh (a memo once it is asked for again, from L1); else
        ReadNewer; Unusable if it does not parse; Fetch if nothing is held."""
        if entry is None:
            return _fetch(self.walk, now, None, None)
        return _judged(self.walk, entry, now, newer_read=False, memo=False)


@attrs.define
class ReadNewer:
    """Needs the snapshot a sibling process stored since ``entry`` was (``None``: none)."""

    io: ClassVar[IO] = IO.STORE
    walk: Walk
    entry: CachedSnapshot

    def held(self, newer: CachedSnapshot | None, now: Now) -> State:
        """The newer snapshot, else the one in hand: CACHE, STALE, Unusable or Fetch."""
        return _judged(self.walk, newer or self.entry, now, newer_read=True, memo=False)


@attrs.define
class Unusable:
    """Needs the scope's stored entry dropped and ``error`` reported: it does not parse."""

    io: ClassVar[IO] = IO.STORE
    walk: Walk
    error: InvalidResponseError

    def dropped(self, now: Now) -> State:
        """On to Stigg, as if nothing were held."""
        return _fetch(self.walk, now, None, None)


@attrs.define
class Fetch:
    """Needs Stigg's snapshot within ``within_s`` seconds, or the reason it has none.

    ``expired``: the snapshot held past its budget (its plans still match policy
    rules); ``kept``: for ``get_entitlements``, its features still in budget and its age.
    """

    io: ClassVar[IO] = IO.STIGG
    walk: Walk
    within_s: float
    expired: CachedSnapshot | None
    kept: tuple[Snapshot, float] | None

    def fetched(self, result: CachedSnapshot | StiggUnavailableError, now: Now) -> Answered:
        """Answered LIVE; else STALE with the features kept, else the fallback policy."""
        walk, version = self.walk, self.walk.policy.version
        if isinstance(result, CachedSnapshot):  # fetched now, here or by a sibling process
            age = max(0.0, now.mono - result.fetched_mono)
            decision = Decision(Source.LIVE, age, stale=False, policy_version=version)
            return Answered(walk, _from_snapshot(walk.question, result.snapshot, decision, now))
        if isinstance(walk.question, EveryFeature):
            return _every_fallback(walk, result, self.kept)
        return _fallback(walk, walk.question, result, self.expired)


State: TypeAlias = ReadMemory | ReadStore | ReadNewer | Unusable | Fetch | Answered

# A memo's CACHE decision, dated by the fast path at each check it answers:
# ``CACHE_DECISION(age_s, policy_version)`` (an assembler: the hot path's cost).
CACHE_DECISION = assembler(Decision, source=Source.CACHE, stale=False, rule=None, reason=None)


def verdict(request: CheckRequest, snapshot: Snapshot, now_wall: float) -> AnyEntitlement:
    """What a check answers from fresh data (LIVE, without local usage): what
    reconciliation holds an offline decision against."""
    decision = Decision(Source.LIVE, 0.0, stale=False)
    return engine.from_snapshot(request, snapshot, decision, now_wall=now_wall)


def begin(
    question: Question,
    policy: Budgets,
    *,
    started: float,
    check_timeout_s: float,
    offline: bool,
    last_error: str | None,
    usage_read: bool,
) -> ReadMemory:
    """The first state of a walk: read what memory holds."""
    return ReadMemory(
        Walk(question, policy, started, check_timeout_s, offline, last_error, usage_read)
    )


def _judged(walk: Walk, entry: CachedSnapshot, now: Now, *, newer_read: bool, memo: bool) -> State:
    """A held snapshot judged for the question (see the module's diagram)."""
    age = now.mono - entry.fetched_mono
    try:
        freshness, budget, held = _freshness(walk, entry, now)
        if freshness is Freshness.FRESH:
            assert held is not None  # only an expired snapshot may keep no feature
            decision = CACHE_DECISION(age, walk.policy.version)
            kept = _memo(walk, entry, budget, now, decision) if memo else None
            answer = _from_snapshot(walk.question, held, decision, now)
            return Answered(walk, answer, memo=kept)
    except InvalidResponseError as error:  # a stored entry whose feature is malformed
        return Unusable(walk, error)
    if not newer_read:
        return ReadNewer(walk, entry)
    if freshness is Freshness.EXPIRED:
        every = isinstance(walk.question, EveryFeature)
        return _fetch(walk, now, entry, (held, age) if every and held is not None else None)
    # Stale while Stigg answers (a refresh on its way) is no offline decision: only those
    # made while Stigg was unreachable are reconciled.
    assert held is not None  # only an expired snapshot may keep no feature
    reason = walk.last_error if walk.offline else None
    decision = Decision(
        Source.STALE, age, stale=True, policy_version=walk.policy.version, reason=reason
    )
    return Answered(
        walk,
        _from_snapshot(walk.question, held, decision, now),
        refresh=not walk.offline and engine.refresh_due(age, budget),
        journal=walk.offline and isinstance(walk.question, CheckRequest),
    )


def _freshness(
    walk: Walk, entry: CachedSnapshot, now: Now
) -> tuple[Freshness, Staleness, Snapshot | None]:
    """How usable ``entry`` is, the budget that says so, and the snapshot to answer from:
    the entry's for one feature; for every feature, its entitlements parsed, and once one
    is past its own budget only those still within theirs (``None``: none is).

    Raises:
        InvalidResponseError: a stored entitlement that does not parse.
    """
    policy, question, snapshot = walk.policy, walk.question, entry.snapshot
    age = now.mono - entry.fetched_mono
    if isinstance(question, CheckRequest):
        budget = policy.staleness_for(question.feature_id)
        feature = snapshot.entitlements.get(question.feature_id)
        freshness = engine.judge(
            age,
            budget,
            past_valid_until=engine.valid_until_passed(feature, now.wall),
            dated_in_future=entry.dated_in_future,
        )
        return freshness, budget, snapshot
    entitlements = dict(snapshot.entitlements)  # every one parsed: a bad one fails it all
    freshness, expired = engine.judge_all(
        age,
        entitlements,
        policy.staleness_for,
        policy.staleness,
        now_wall=now.wall,
        dated_in_future=entry.dated_in_future,
    )
    if freshness is Freshness.EXPIRED:
        entitlements = {f: e for f, e in entitlements.items() if f not in expired}
        if not entitlements:
            return freshness, policy.staleness, None
    return freshness, policy.staleness, attrs.evolve(snapshot, entitlements=entitlements)


def _memo(
    walk: Walk, entry: CachedSnapshot, budget: Staleness, now: Now, decision: Decision
) -> Memo | None:
    """The CACHE answer prepared for the fast path, for the check kinds it answers."""
    question = walk.question
    if (
        not isinstance(question, CheckRequest)
        or question.kind not in _MEMO_KINDS
        or question.requested_values
        or entry.dated_in_future
        or not question.feature_id.strip()
    ):
        return None
    shape = attrs.evolve(question, requested_usage=None)  # the amount is judged per check
    answer = engine.warm_answer(
        shape,
        entry.snapshot,
        budget,
        fetched_mono=entry.fetched_mono,
        now_wall=now.wall,
        policy_version=walk.policy.version,
        decision=decision,
    )
    return Memo(entry, shape, answer)


def _fetch(
    walk: Walk, now: Now, expired: CachedSnapshot | None, kept: tuple[Snapshot, float] | None
) -> Fetch:
    """Ask Stigg within what is left of the check's budget."""
    return Fetch(walk, walk.check_timeout_s - (now.mono - walk.started), expired, kept)


def _from_snapshot(
    question: Question, snapshot: Snapshot, decision: Decision, now: Now
) -> Judgement:
    """The answer a snapshot gives (with the usage Stigg has not seen, for usage checks)."""
    if isinstance(question, EveryFeature):
        if isinstance(snapshot.entitlements, dict):
            answer = attrs.evolve(snapshot, decision=decision)
        else:  # every entitlement parsed, as the caller gets them
            answer = attrs.evolve(
                snapshot, entitlements=dict(snapshot.entitlements), decision=decision
            )
        return Judgement(lambda _: answer)
    feature = snapshot.entitlements.get(question.feature_id)
    usage_of = None
    if engine.uses_usage(question, feature):
        scope = (question.customer_id, question.resource_id, question.feature_id)
        floor = engine.usage_floor(feature, now.wall)
        shown = None if feature is None else engine.usage_in_period(feature, now.wall)
        usage_of = UsageOf(scope, snapshot.fetched_at, floor, shown)
    return Judgement(
        functools.partial(engine.from_snapshot, question, snapshot, decision, now.wall), usage_of
    )


def _fallback(
    walk: Walk, request: CheckRequest, error: StiggUnavailableError, expired: CachedSnapshot | None
) -> Answered:
    """POLICY or DEFAULT: the policy's answer for a check Stigg could not answer."""
    plans = () if expired is None else expired.snapshot.plan_ids
    resolution = walk.policy.resolve(
        request.customer_id, request.resource_id, request.feature_id, plans
    )
    why = f"snapshot older than max_staleness; {error}" if expired else f"no snapshot; {error}"
    decision = Decision(
        resolution.source,
        None,
        stale=False,
        rule=resolution.rule,
        policy_version=walk.policy.version,
        reason=why,
    )
    usage_of = None
    if request.kind in _USAGE_KINDS or engine.grant_uses_usage(request, resolution.grant):
        scope = (request.customer_id, request.resource_id, request.feature_id)
        usage_of = UsageOf(scope, None, None, None)
    make = functools.partial(engine.from_grant, request, resolution.grant, decision)
    return Answered(
        walk,
        Judgement(make, usage_of),
        journal=True,
        default_allow=why if resolution.rule is None else None,
        grant=resolution.grant,
    )


def _every_fallback(
    walk: Walk, error: StiggUnavailableError, kept: tuple[Snapshot, float] | None
) -> Answered:
    """``get_entitlements`` Stigg could not answer: the features still in budget (STALE),
    else none (DEFAULT: each check then answers from the policy)."""
    version = walk.policy.version
    if kept is not None:
        snapshot, age = kept
        decision = Decision(
            Source.STALE, age, stale=True, policy_version=version, reason=str(error)
        )
        return Answered(walk, Judgement(lambda _: attrs.evolve(snapshot, decision=decision)))
    decision = Decision(
        Source.DEFAULT, None, stale=False, policy_version=version, reason=str(error)
    )
    customer_id, resource_id = walk.scope
    empty = Snapshot(customer_id, resource_id, {}, fetched_at=0.0, decision=decision)
    return Answered(walk, Judgement(lambda _: empty))
