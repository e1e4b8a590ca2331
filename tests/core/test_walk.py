"""The tier walk's rules as a transition table: state x event -> next state, decision (no I/O).

Each row of :data:`TABLE` is one arrow of the diagram in :mod:`stigg_cache.core.walk`'s
docstring, taken in a situation that leads along it, with what the next state must
hold. ``test_every_arrow_of_the_diagram_has_a_row`` reads the diagram: an arrow drawn
without a row (or a row for an arrow not drawn) fails it.
"""

from __future__ import annotations

import re
import typing
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

import attrs
import pytest

from stigg_cache.core import walk
from stigg_cache.core.engine import CheckKind, CheckRequest
from stigg_cache.core.terms import CachedSnapshot
from stigg_cache.errors import FailureKind, InvalidResponseError, StiggUnavailableError
from stigg_cache.models import FeatureEntitlement, Snapshot, Source
from stigg_cache.policy import FallbackPolicy, FeaturePolicy, Grant, Rule, Staleness
from stigg_cache.testing.fake import boolean, enum_feature

POLICY = FallbackPolicy(
    staleness=Staleness(fresh_for_s=60, max_staleness_s=3600),
    features={"sso": FeaturePolicy(max_staleness_s=600, fallback=Grant(has_access=False))},
    rules=(Rule("trials", {"sso": Grant(has_access=True)}, customers=("trial-*",)),),
    version="v1",
)
NOW = walk.Now(mono=100_000.0, wall=1_900_000_000.0)
DOWN = StiggUnavailableError(FailureKind.CONNECTION, "refused")
SSO = CheckRequest(CheckKind.BOOLEAN, "acme", "sso")
TRIAL_SSO = CheckRequest(CheckKind.BOOLEAN, "trial-9", "sso")
OTHER = CheckRequest(CheckKind.BOOLEAN, "acme", "other")  # no policy entry
MODELS = CheckRequest(CheckKind.ENUM, "acme", "models", requested_values=("a",))
EVERY = walk.EveryFeature("acme")
PASSED = datetime.fromtimestamp(NOW.wall - 3, UTC)  # a validUntil already passed


def _begin(
    question: walk.Question = SSO,
    *,
    offline: bool = False,
    spent_s: float = 0.0,
    usage_read: bool = True,
) -> walk.ReadMemory:
    return walk.begin(
        question,
        POLICY,
        started=NOW.mono - spent_s,
        check_timeout_s=0.5,
        offline=offline,
        last_error="refused" if offline else None,
        usage_read=usage_read,
    )


def _store(question: walk.Question = SSO, *, spent_s: float = 0.0) -> walk.State:
    """The ReadStore that nothing in memory leads to."""
    return _begin(question, spent_s=spent_s).held(None, NOW)


def _held(age_s: float, *features: FeatureEntitlement, customer: str = "acme") -> CachedSnapshot:
    snapshot = Snapshot(customer, None, {f.feature_id: f for f in features}, NOW.wall - age_s)
    return CachedSnapshot(snapshot, NOW.mono - age_s)


class _Broken(Mapping[str, Any]):
    """Stored entitlements that do not parse."""

    def __getitem__(self, key: str) -> Any:
        raise InvalidResponseError(f"entitlement {key!r}: not JSON")

    def __iter__(self) -> Iterator[str]:
        return iter(["sso"])

    def __len__(self) -> int:
        return 1


BROKEN = CachedSnapshot(Snapshot("acme", None, _Broken(), NOW.wall), NOW.mono)
FRESH = _held(10, boolean("sso"), enum_feature("models", ["a"]))
STALE = _held(120, boolean("sso"))  # past fresh_for (60 s), within sso's 600 s
EXPIRED = _held(700, boolean("sso"), customer="trial-9")  # past sso's own 600 s
HALF_EXPIRED = _held(700, boolean("sso"), boolean("export"))  # sso: 600 s; export: 3,600 s
STALE_ON_ARRIVAL = _held(2, FeatureEntitlement("sso", "BOOLEAN", True, valid_until=PASSED))


def _newer(question: walk.Question, entry: CachedSnapshot, *, offline: bool = False) -> walk.State:
    """The ReadNewer a held, not fresh ``entry`` leads to."""
    return _begin(question, offline=offline).held(entry, NOW)


def _fetch(question: walk.Question = SSO, *, kept_from: CachedSnapshot | None = None) -> walk.State:
    """The Fetch that nothing held (or ``kept_from``, past its budget, read twice) leads to."""
    if kept_from is None:
        store = _store(question)
        assert isinstance(store, walk.ReadStore)
        return store.held(None, NOW)
    newer = _newer(question, kept_from)
    assert isinstance(newer, walk.ReadNewer)
    return newer.held(None, NOW)


def _unusable() -> walk.State:
    return _begin().held(BROKEN, NOW)


@attrs.frozen
class Row:
    """One arrow taken: ``event`` applied to ``state`` gives a ``to`` (with ``source``),
    whose attributes ``then`` names hold those values."""

    arrow: str
    state: Callable[[], walk.State]
    event: str
    args: tuple[Any, ...]
    to: type[Any]
    source: Source | None = None
    then: Mapping[str, Any] = attrs.field(factory=dict)
    kwargs: Mapping[str, Any] = attrs.field(factory=dict)


# (state, event) -> next state and what it holds: every arrow of walk.py's diagram
TABLE = [
    # ReadMemory --held(entry)-->
    Row("fresh in memory: CACHE, and a memo for the fast path", _begin,
        "held", (FRESH, NOW), walk.Answered, Source.CACHE,
        {"memo.answer.fresh_until_mono": FRESH.fetched_mono + 60, "refresh": False,
         "journal": False}),
    Row("fresh, an enum check: CACHE, no memo (its values vary per call)", lambda: _begin(MODELS),
        "held", (FRESH, NOW), walk.Answered, Source.CACHE, {"memo": None}),
    Row("not fresh: look for a sibling's newer one first", _begin,
        "held", (STALE, NOW), walk.ReadNewer, None, {"entry": STALE}),
    Row("an entry that does not parse", _begin,
        "held", (BROKEN, NOW), walk.Unusable, None, {"error.args": ("entitlement 'sso': not JSON",)}),
    Row("nothing in memory: the store's", _begin, "held", (None, NOW), walk.ReadStore),
    # ReadStore --held(entry)-->
    Row("fresh, just loaded from the store: CACHE once, no memo yet", _store,
        "held", (FRESH, NOW), walk.Answered, Source.CACHE, {"memo": None}),
    Row("stored, not fresh: look for a sibling's newer one", _store,
        "held", (STALE, NOW), walk.ReadNewer, None, {"entry": STALE}),
    Row("a stored entry that does not parse", _store, "held", (BROKEN, NOW), walk.Unusable),
    Row("nothing held: Stigg, within what is left of the budget", lambda: _store(spent_s=0.2),
        "held", (None, NOW), walk.Fetch, None, {"within_s": pytest.approx(0.3), "expired": None}),
    # ReadNewer --held(newer)-->
    Row("a sibling refreshed it meanwhile: CACHE", lambda: _newer(SSO, STALE),
        "held", (_held(1, boolean("sso")), NOW), walk.Answered, Source.CACHE),
    Row("none newer, Stigg answers: STALE at once, refreshed behind", lambda: _newer(SSO, STALE),
        "held", (None, NOW), walk.Answered, Source.STALE, {"refresh": True, "journal": False}),
    Row("none newer, Stigg unreachable: STALE, an offline decision journaled",
        lambda: _newer(SSO, STALE, offline=True),
        "held", (None, NOW), walk.Answered, Source.STALE, {"refresh": False, "journal": True}),
    Row("stale on arrival (validUntil passed): refreshed once 5 s old, not per check",
        lambda: _newer(SSO, STALE_ON_ARRIVAL),
        "held", (None, NOW), walk.Answered, Source.STALE, {"refresh": False, "journal": False}),
    Row("past its own budget: not trusted, Stigg asked, its plans kept for rules",
        lambda: _newer(TRIAL_SSO, EXPIRED),
        "held", (None, NOW), walk.Fetch, None, {"expired": EXPIRED, "kept": None}),
    Row("get_entitlements past a feature's budget: the rest kept for a fallback",
        lambda: _newer(EVERY, HALF_EXPIRED),
        "held", (None, NOW), walk.Fetch, None, {"expired": HALF_EXPIRED}),
    Row("the sibling's newer entry does not parse", lambda: _newer(SSO, STALE),
        "held", (BROKEN, NOW), walk.Unusable, None),
    # Unusable --dropped()-->
    Row("a dropped entry: on to Stigg as if nothing were held", _unusable,
        "dropped", (NOW,), walk.Fetch, None, {"expired": None, "kept": None}),
    # Fetch --fetched(result)-->
    Row("Stigg answered: LIVE", _fetch,
        "fetched", (_held(0.0, boolean("sso")), NOW), walk.Answered, Source.LIVE,
        {"journal": False, "refresh": False}),
    Row("get_entitlements, Stigg unreachable: STALE with the features in budget",
        lambda: _fetch(EVERY, kept_from=HALF_EXPIRED),
        "fetched", (DOWN, NOW), walk.Answered, Source.STALE,
        {"journal": False, "judged.entitlements.keys()": {"export"}}),
    Row("unreachable, past budget: a rule matching the snapshot's plans (POLICY)",
        lambda: _fetch(TRIAL_SSO, kept_from=EXPIRED),
        "fetched", (DOWN, NOW), walk.Answered, Source.POLICY,
        {"journal": True, "grant": Grant(has_access=True)}),
    Row("unreachable, nothing held, a policy entry: its fallback (DEFAULT), journaled", _fetch,
        "fetched", (DOWN, NOW), walk.Answered, Source.DEFAULT,
        {"journal": True, "grant": Grant(has_access=False), "default_allow": None}),
    Row("unreachable, no policy entry: the built-in allow, logged", lambda: _fetch(OTHER),
        "fetched", (DOWN, NOW), walk.Answered, Source.DEFAULT,
        {"journal": True, "default_allow": "no snapshot; refused"}),
    Row("get_entitlements, unreachable, nothing held: DEFAULT, no entitlements",
        lambda: _fetch(EVERY),
        "fetched", (DOWN, NOW), walk.Answered, Source.DEFAULT,
        {"journal": False, "judged.entitlements": {}}),
]  # fmt: skip


def _answer(state: walk.Answered) -> Any:
    return state.judgement.answer(lambda *_: None)


def _attribute(state: walk.State, path: str) -> Any:
    """``a.b.c`` of a state (``judged``: an Answered's judgement; ``x()`` a call)."""
    value: Any = state
    for name in path.split("."):
        if name == "judged":
            value = _answer(value)
        elif name.endswith("()"):
            value = getattr(value, name[:-2])()
        else:
            value = getattr(value, name)
    return value


@pytest.mark.parametrize("row", TABLE, ids=[row.arrow for row in TABLE])
def test_each_state_and_event_leads_to_the_next_state_the_table_gives(row: Row) -> None:
    state = row.state()
    following = getattr(state, row.event)(*row.args, **row.kwargs)
    assert type(following) is row.to
    if isinstance(following, walk.Answered):
        decision = _answer(following).decision
        assert decision is not None
        assert decision.source is row.source
    for path, expected in row.then.items():
        got = _attribute(following, path)
        assert (set(got) if path.endswith("keys()") else got) == expected, path


# A diagram line: ``State --event(args)--> Target LABEL``, or a further target ``-> Target LABEL``
_ARROW = re.compile(
    r"^\s*(?:(?P<state>\w+) --(?P<event>\w+)\([^)]*\)-*)?->\s+(?P<to>[^ ].*?)(?:\s{2,}|$)"
)
_SOURCES = {source.name for source in Source}


def _diagram() -> set[tuple[str, str, str, str | None]]:
    """Every arrow drawn in walk.py's docstring: (state, event, next state, source)."""
    assert walk.__doc__ is not None
    arrows: set[tuple[str, str, str, str | None]] = set()
    state = event = ""
    for line in walk.__doc__.splitlines():
        found = _ARROW.match(line)
        if found is None:
            continue
        state, event = found["state"] or state, found["event"] or event
        for alternative in found["to"].split(" / "):  # "Answered POLICY / DEFAULT"
            first, *rest = alternative.split()
            if first in _SOURCES:
                arrows.add((state, event, "Answered", first))
            else:
                arrows.add((state, event, first, rest[0] if first == "Answered" else None))
    return arrows


def _state_name(row: Row) -> str:
    return type(row.state()).__name__


def test_every_arrow_of_the_diagram_has_a_row() -> None:
    drawn = _diagram()
    tabled = {
        (
            _state_name(row),
            row.event,
            row.to.__name__,
            None if row.source is None else row.source.name,
        )
        for row in TABLE
    }
    assert len(drawn) >= 17  # the diagram was read (17 arrows when this was written)
    assert drawn - tabled == set(), "arrows drawn in walk.py without a row"
    assert tabled - drawn == set(), "rows for arrows walk.py's diagram does not draw"


def test_every_state_is_in_the_table() -> None:
    states = {name for name, *_ in _diagram()} | {"Answered"}
    assert states == {cls.__name__ for cls in typing.get_args(walk.State)}


def _metered(*, usage_read: bool) -> walk.State:
    metered = CheckRequest(CheckKind.METERED, "acme", "api_calls", requested_usage=1)
    return _begin(metered, usage_read=usage_read).held(_held(1, boolean("api_calls")), NOW)


# state -> what the step out of it waits on: the async driver keeps only MEMORY on the loop
IO_TABLE: list[tuple[str, Callable[[], walk.State], walk.IO]] = [
    ("memory", _begin, walk.IO.MEMORY),
    ("the store", _store, walk.IO.STORE),
    ("a sibling's newer entry", lambda: _newer(SSO, STALE), walk.IO.STORE),
    ("an entry to drop", _unusable, walk.IO.STORE),
    ("Stigg", _fetch, walk.IO.STIGG),
    ("an answer without local usage", lambda: _begin().held(FRESH, NOW), walk.IO.MEMORY),
    ("an answer with local usage in memory", lambda: _metered(usage_read=True), walk.IO.MEMORY),
    ("an answer with usage still in the outbox", lambda: _metered(usage_read=False), walk.IO.STORE),
]


@pytest.mark.parametrize(("reads", "state", "io"), IO_TABLE, ids=[r[0] for r in IO_TABLE])
def test_each_state_says_what_its_step_waits_on(
    reads: str, state: Callable[[], walk.State], io: walk.IO
) -> None:
    assert state().io is io, reads


def test_every_state_says_what_its_step_waits_on() -> None:
    tabled = {type(state()).__name__ for _, state, _ in IO_TABLE}
    assert tabled == {cls.__name__ for cls in typing.get_args(walk.State)}
