"""The tier walk as a pure state machine: each state's transitions, with no I/O at all."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

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


def _begin(
    question: walk.Question = SSO, *, offline: bool = False, spent_s: float = 0.0
) -> walk.ReadHeld:
    return walk.begin(
        question,
        POLICY,
        started=NOW.mono - spent_s,
        check_timeout_s=0.5,
        offline=offline,
        last_error="refused" if offline else None,
    )


def _held(age_s: float, *features: FeatureEntitlement, customer: str = "acme") -> CachedSnapshot:
    snapshot = Snapshot(customer, None, {f.feature_id: f for f in features}, NOW.wall - age_s)
    return CachedSnapshot(snapshot, NOW.mono - age_s)


def _source(state: walk.State) -> Source:
    assert isinstance(state, walk.Answered)
    answer = state.judgement.answer(lambda *_: None)
    assert answer.decision is not None
    return answer.decision.source


def test_nothing_held_asks_stigg_within_what_is_left_of_the_budget() -> None:
    state = _begin(spent_s=0.2).held(None, NOW)
    assert isinstance(state, walk.Fetch)
    assert state.within_s == pytest.approx(0.3)
    live = state.fetched(_held(0.0, boolean("sso")), NOW)
    assert (_source(live), live.journal, live.refresh) == (Source.LIVE, False, False)


def test_stigg_unreachable_and_nothing_held_is_the_policys_answer_and_journaled() -> None:
    fallback = _begin().held(None, NOW)
    assert isinstance(fallback, walk.Fetch)
    answered = fallback.fetched(DOWN, NOW)
    assert (_source(answered), answered.journal) == (Source.DEFAULT, True)
    assert answered.grant == Grant(has_access=False)
    assert answered.default_allow is None  # sso has a policy entry
    unlisted = _begin(CheckRequest(CheckKind.BOOLEAN, "acme", "other")).held(None, NOW)
    assert isinstance(unlisted, walk.Fetch)
    assert unlisted.fetched(DOWN, NOW).default_allow == "no snapshot; refused"


def test_a_fresh_snapshot_in_memory_answers_cache_and_leaves_a_memo_for_the_fast_path() -> None:
    held = _held(10, boolean("sso"), enum_feature("models", ["a"]))
    loaded = _begin().held(held, NOW)  # just loaded from the store: it answers once first
    assert isinstance(loaded, walk.Answered)
    assert loaded.memo is None
    cached = _begin().held(held, NOW, in_memory=True)
    assert _source(cached) is Source.CACHE
    assert isinstance(cached, walk.Answered)
    assert cached.memo is not None
    assert cached.memo.answer.fresh_until_mono == held.fetched_mono + 60
    enum = CheckRequest(CheckKind.ENUM, "acme", "models", requested_values=("a",))
    enum_answer = _begin(enum).held(held, NOW, in_memory=True)
    assert isinstance(enum_answer, walk.Answered)
    assert enum_answer.memo is None


PASSED = datetime.fromtimestamp(NOW.wall - 3, UTC)  # a validUntil already passed


@pytest.mark.parametrize(
    ("offline", "age_s", "valid_until", "refresh", "journal"),
    [
        # stale on arrival (its validUntil passed): asked again once 5 s old, not per check
        (False, 2, PASSED, False, False),
        (False, 120, None, True, False),  # Stigg answers: refreshed behind, not journaled
        (True, 120, None, False, True),  # Stigg unreachable: an offline decision, no refresh
    ],
)
def test_a_stale_snapshot_is_answered_at_once_after_a_look_for_a_siblings_newer_one(
    offline: bool, age_s: float, valid_until: datetime | None, refresh: bool, journal: bool
) -> None:
    sso = FeatureEntitlement("sso", "BOOLEAN", True, valid_until=valid_until)
    newer = _begin(offline=offline).held(_held(age_s, sso), NOW)
    assert isinstance(newer, walk.ReadNewer)
    stale = newer.held(None, NOW)
    assert isinstance(stale, walk.Answered)
    assert (_source(stale), stale.refresh, stale.journal) == (Source.STALE, refresh, journal)
    sibling = newer.held(_held(1, boolean("sso")), NOW)  # a sibling refreshed it meanwhile
    assert _source(sibling) is Source.CACHE


def test_past_its_own_budget_a_feature_is_not_trusted_and_rules_still_see_its_plans() -> None:
    held = _held(700, boolean("sso"), customer="trial-9")  # sso's own budget is 600 s
    newer = _begin(CheckRequest(CheckKind.BOOLEAN, "trial-9", "sso")).held(held, NOW)
    assert isinstance(newer, walk.ReadNewer)
    fetch = newer.held(None, NOW)
    assert isinstance(fetch, walk.Fetch)
    assert fetch.expired is held
    answered = fetch.fetched(DOWN, NOW)
    assert _source(answered) is Source.POLICY


def test_get_entitlements_keeps_only_the_features_within_their_own_budget() -> None:
    held = _held(700, boolean("sso"), boolean("export"))  # sso: 600 s; export: 3,600 s
    newer = _begin(walk.EveryFeature("acme")).held(held, NOW)
    assert isinstance(newer, walk.ReadNewer)
    fetch = newer.held(None, NOW)
    assert isinstance(fetch, walk.Fetch)
    answered = fetch.fetched(DOWN, NOW)
    snapshot = answered.judgement.answer(lambda *_: None)
    assert isinstance(snapshot, Snapshot)
    assert set(snapshot.entitlements) == {"export"}
    assert snapshot.decision is not None
    assert snapshot.decision.source is Source.STALE
    assert not answered.journal


class _Broken(Mapping[str, Any]):
    """Stored entitlements that do not parse."""

    def __getitem__(self, key: str) -> Any:
        raise InvalidResponseError(f"entitlement {key!r}: not JSON")

    def __iter__(self) -> Iterator[str]:
        return iter(["sso"])

    def __len__(self) -> int:
        return 1


def test_a_stored_entry_that_does_not_parse_is_dropped_and_stigg_asked() -> None:
    broken = CachedSnapshot(Snapshot("acme", None, _Broken(), NOW.wall), NOW.mono)
    unusable = _begin().held(broken, NOW)
    assert isinstance(unusable, walk.Unusable)
    assert "not JSON" in str(unusable.error)
    assert isinstance(unusable.dropped(NOW), walk.Fetch)
