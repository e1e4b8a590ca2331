"""A client built before ``os.fork`` works in the child as a client of its own (DESIGN §8).

The parent keeps using its pooled connections while the child works: a child
that reused a parent's keep-alive socket would read answers meant for the
parent's requests (Stigg's JSON names no customer), which these tests catch by
giving every customer a feature only it has.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import stigg

from stigg_cache import FallbackPolicy, ResilientClient, Source, Staleness
from stigg_cache._support.sqlite import FORK_GATE
from stigg_cache.testing.fake import FakeMode, FakeStigg, boolean
from tests.conftest import API_KEY
from tests.forking import child_result, fork_child, in_child, settle
from tests.helpers import eventually

ROUNDS = 10
PER_ROUND = 4  # customers checked at once by each side per round
POLICY = FallbackPolicy(staleness=Staleness(fresh_for_s=60, max_staleness_s=3600))
Checked = list[tuple[str, bool, str]]


def _own_feature(fake: FakeStigg, *customers: str) -> None:
    for customer in customers:
        fake.set_customer(customer, [boolean(f"only-{customer}")])


def _check_all(client: ResilientClient, customers: list[str]) -> Checked:
    """Check each customer's own feature, all at once from threads (pooled sockets in use)."""
    answers: Checked = []

    def one(customer: str) -> None:
        answer = client.get_boolean_entitlement(customer_id=customer, feature_id=f"only-{customer}")
        answers.append((customer, answer.has_access, answer.decision.source.value))

    threads = [threading.Thread(target=one, args=(c,)) for c in customers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    return answers


def _wrong(answers: Checked) -> Checked:
    return [a for a in answers if not a[1] or a[2] not in (Source.LIVE.value, Source.CACHE.value)]


@pytest.fixture(params=["built-in", "rest-sdk"])
def pooled_client(request: Any, fake: FakeStigg, tmp_path: Path) -> Iterator[ResilientClient]:
    """A client whose HTTP pool holds several keep-alive connections to the fake."""
    inner = None if request.param == "built-in" else stigg.Stigg(api_key=API_KEY, base_url=fake.url)
    client = ResilientClient(
        inner,
        api_key=API_KEY,
        base_url=fake.url,
        store=f"sqlite:///{tmp_path}/cache.db",
        policy=POLICY,
        check_timeout=2.0,
    )
    warm = [f"warm-{n}" for n in range(PER_ROUND)]
    _own_feature(fake, *warm)
    assert not _wrong(_check_all(client, warm))
    yield client
    client.close()


def test_a_forked_child_never_reads_another_customers_answer(
    pooled_client: ResilientClient, fake: FakeStigg
) -> None:
    crossed: list[tuple[int, str, Checked]] = []
    for round_ in range(ROUNDS):
        in_flight = f"inflight-{round_}"
        mine = [f"parent-{round_}-{n}" for n in range(PER_ROUND)]
        theirs = [in_flight] + [f"child-{round_}-{n}" for n in range(PER_ROUND)]
        _own_feature(fake, *mine, *theirs)
        # A fetch in flight at the fork: the child inherits its flight and its socket.
        fake.set_mode(FakeMode.SLOW, delay_s=0.3)
        started = threading.Thread(target=_check_all, args=(pooled_client, [in_flight]))
        started.start()
        settle()
        pid = fork_child(lambda: _check_all(pooled_client, theirs))  # noqa: B023 - run at once
        fake.set_mode(FakeMode.UP)
        parent_answers = _check_all(pooled_client, mine)
        child_answers = [tuple(a) for a in child_result(pid)]
        started.join(10)
        if _wrong(parent_answers):
            crossed.append((round_, "parent", _wrong(parent_answers)))
        if _wrong(child_answers) or len(child_answers) != len(theirs):
            crossed.append((round_, "child", child_answers))
    assert crossed == []


def test_a_forked_child_sends_its_own_usage_once_and_sees_policy_edits(
    fake: FakeStigg, tmp_path: Path
) -> None:
    # An outbox of each process's own (memory://): only the child's own flusher can send
    # the child's event, and the record pending in the parent at the fork is the parent's.
    policy = tmp_path / "fallback.yaml"
    policy.write_text("version: 1\ndefault: {has_access: true}\n")
    client = ResilientClient(
        None,
        api_key=API_KEY,
        base_url=fake.url,
        store=f"sqlite:///{tmp_path}/c.db",
        outbox="memory://",
        policy=policy,
    )
    before = client.status().policy_version
    fake.set_mode(FakeMode.DOWN)
    client.report_event([{"customer_id": "acme", "event_name": "e", "idempotency_key": "parent"}])

    def child() -> dict[str, Any]:
        event = {"customer_id": "acme", "event_name": "e", "idempotency_key": "child"}
        client.report_event([event])
        drained = client.flush(timeout=10).drained
        policy.write_text("version: 1\ndefault: {has_access: false}\n")
        eventually(lambda: client.status().policy_version != before)
        answer = client.get_boolean_entitlement(customer_id="nobody", feature_id="x")
        client.close()
        return {"drained": drained, "has_access": answer.has_access}

    pid = fork_child(child)
    fake.set_mode(FakeMode.UP)
    result = child_result(pid)
    assert client.flush(timeout=10).drained
    assert result == {"drained": True, "has_access": False}
    sent = [e["idempotencyKey"] for batch in fake.batches for e in batch]
    assert sorted(sent) == ["child", "parent"]
    client.close()


def test_a_child_closing_does_not_release_the_parents_leases(
    fake: FakeStigg, tmp_path: Path
) -> None:
    client = ResilientClient(
        None, api_key=API_KEY, base_url=fake.url, store=f"sqlite:///{tmp_path}/c.db", policy=POLICY
    )
    fake.set_mode(FakeMode.BLACKHOLE)  # the parent's batch hangs in a send, leased to it
    client.report_event([{"customer_id": "acme", "event_name": "e", "idempotency_key": "k"}])
    eventually(lambda: fake.counts["POST blackholed"] == 1)
    leased: Callable[[], int] = lambda: client.outbox.stats().leased  # noqa: E731
    assert leased() == 1

    def child() -> int:
        client.close()  # gives back the child's leases: it has none
        return 0

    in_child(child)
    assert leased() == 1
    fake.set_mode(FakeMode.UP)
    client.close()


def test_a_fork_waits_until_no_thread_of_ours_is_inside_sqlite() -> None:
    # SQLite's process-wide mutexes, held by a thread at the fork, stay locked in the child.
    inside, left_at = threading.Event(), []

    def query() -> None:
        with FORK_GATE:
            inside.set()
            time.sleep(0.3)  # a long query
            left_at.append(time.monotonic())

    worker = threading.Thread(target=query)
    worker.start()
    inside.wait(10)
    assert in_child(lambda: 0) == 0
    forked_at = time.monotonic()
    worker.join(10)
    assert left_at
    assert left_at[0] <= forked_at


def test_a_call_that_starts_while_a_fork_waits_enters_only_after_it() -> None:
    # The fork waits for a call under way; a second call asked for meanwhile must not slip in.
    inside, left_at, entered_at = threading.Event(), [], []

    def long_query() -> None:
        with FORK_GATE:
            inside.set()
            time.sleep(0.3)
            left_at.append(time.monotonic())

    def late_query() -> None:
        time.sleep(0.1)  # the fork is waiting for long_query by now
        with FORK_GATE:
            entered_at.append(time.monotonic())

    first, second = threading.Thread(target=long_query), threading.Thread(target=late_query)
    first.start()
    inside.wait(10)
    second.start()
    assert in_child(lambda: 0) == 0
    for thread in (first, second):
        thread.join(10)
    assert entered_at
    assert entered_at[0] >= left_at[0]  # not at 0.1 s, beside the call the fork waited for
