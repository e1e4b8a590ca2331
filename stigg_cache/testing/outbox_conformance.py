"""The outbox conformance suite: every outbox, ours or a plugin's, passes it.

Subclass it in a test module and say how to open your outbox::

    class TestMyOutbox(OutboxConformance):
        def make_outbox(self, base: Path) -> Outbox:
            return MyOutbox(base / "outbox")

Processes share an outbox through ``outbox_url``; leave it ``None`` for an
outbox that lives in one process only.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stigg_cache.errors import StiggCacheError, StoreNotFoundError
from stigg_cache.outbox import open_outbox
from stigg_cache.outbox.base import DeadLetterBox, Outbox, SharedUsage, UsageChanges
from stigg_cache.outbox.records import RecordKind, UsageRecord, event_record, usage_record

NOW = 1_800_000_000.0
LEASE_S = 30.0


def units(count: int, prefix: str = "u") -> list[UsageRecord]:
    """Distinct usage records of one unit of ``api_calls``, stamped at ``NOW``."""
    return [
        usage_record(
            {
                "customer_id": "c0",
                "feature_id": "api_calls",
                "value": 1,
                "idempotency_key": f"{prefix}{n}",
            },
            NOW,
        )
        for n in range(count)
    ]


def events(count: int, prefix: str = "e") -> list[UsageRecord]:
    """Distinct valid events, stamped at ``NOW``."""
    return [
        event_record(
            {
                "customer_id": f"c{n % 3}",
                "event_name": "api.request",
                "idempotency_key": f"{prefix}{n}",
            },
            NOW,
        )
        for n in range(count)
    ]


class OutboxConformance:
    """Behaviour every outbox must have."""

    def make_outbox(self, base: Path) -> Outbox:
        """A new (or reopened) outbox whose data lives under ``base``."""
        raise NotImplementedError

    @pytest.fixture
    def outbox(self, tmp_path: Path) -> Iterator[Outbox]:
        box = self.make_outbox(tmp_path)
        yield box
        box.close()

    def test_enqueued_records_are_claimed_oldest_first(self, outbox: Outbox) -> None:
        outbox.enqueue(events(5), NOW)
        claimed = outbox.claim(RecordKind.EVENT, 3, "a", now=NOW, lease_s=LEASE_S)
        assert [c.record.idempotency_key for c in claimed] == ["e0", "e1", "e2"]
        assert claimed[0].record == events(1)[0]

    def test_kinds_are_claimed_separately(self, outbox: Outbox) -> None:
        usage = usage_record(
            {"customer_id": "c", "feature_id": "f", "value": 2, "idempotency_key": "u"}, NOW
        )
        outbox.enqueue([*events(1), usage], NOW)
        assert [
            c.record.kind for c in outbox.claim(RecordKind.USAGE, 10, "a", now=NOW, lease_s=LEASE_S)
        ] == [RecordKind.USAGE]

    def test_a_leased_record_is_not_claimed_again_until_its_lease_ends(
        self, outbox: Outbox
    ) -> None:
        outbox.enqueue(events(2), NOW)
        first = outbox.claim(RecordKind.EVENT, 10, "a", now=NOW, lease_s=LEASE_S)
        assert len(first) == 2
        assert outbox.claim(RecordKind.EVENT, 10, "b", now=NOW + 1, lease_s=LEASE_S) == []
        again = outbox.claim(RecordKind.EVENT, 10, "b", now=NOW + LEASE_S + 1, lease_s=LEASE_S)
        assert [c.id for c in again] == [c.id for c in first]

    def test_sent_records_are_never_claimed_again(self, outbox: Outbox) -> None:
        outbox.enqueue(events(3), NOW)
        claimed = outbox.claim(RecordKind.EVENT, 2, "a", now=NOW, lease_s=LEASE_S)
        outbox.settle(sent=[c.id for c in claimed], owner="a", now=NOW)
        rest = outbox.claim(RecordKind.EVENT, 10, "a", now=NOW + LEASE_S * 2, lease_s=LEASE_S)
        assert [c.record.idempotency_key for c in rest] == ["e2"]
        assert outbox.stats(NOW).pending == 1

    def test_retry_waits_until_its_time_and_counts_the_attempt(self, outbox: Outbox) -> None:
        outbox.enqueue(events(1), NOW)
        (claimed,) = outbox.claim(RecordKind.EVENT, 1, "a", now=NOW, lease_s=LEASE_S)
        outbox.settle(retry=[claimed.id], owner="a", now=NOW, retry_at=NOW + 10, reason="503")
        assert outbox.claim(RecordKind.EVENT, 1, "a", now=NOW + 5, lease_s=LEASE_S) == []
        (again,) = outbox.claim(RecordKind.EVENT, 1, "a", now=NOW + 10, lease_s=LEASE_S)
        assert again.attempts == 1

    def test_release_gives_leases_back_at_once(self, outbox: Outbox) -> None:
        outbox.enqueue(events(2), NOW)
        outbox.claim(RecordKind.EVENT, 2, "a", now=NOW, lease_s=LEASE_S)
        assert outbox.release("a") == 2
        assert len(outbox.claim(RecordKind.EVENT, 2, "b", now=NOW, lease_s=LEASE_S)) == 2

    def test_same_key_and_payload_is_a_duplicate_receipt(self, outbox: Outbox) -> None:
        (first,) = outbox.enqueue(events(1), NOW)
        (again,) = outbox.enqueue(events(1), NOW)
        assert (first.duplicate, again.duplicate) == (False, True)
        assert outbox.stats(NOW).pending == 1

    def test_a_key_reused_for_other_usage_is_refused_and_nothing_is_enqueued(
        self, outbox: Outbox
    ) -> None:
        outbox.enqueue(events(1), NOW)
        other = event_record(
            {"customer_id": "c0", "event_name": "other", "idempotency_key": "e0"}, NOW
        )
        with pytest.raises(ValueError, match="already used"):
            outbox.enqueue([*events(3, prefix="fresh"), other], NOW)
        assert outbox.stats(NOW).pending == 1  # all or nothing

    def test_a_key_belongs_to_its_customer(self, outbox: Outbox) -> None:
        def unit(customer_id: str, value: float) -> UsageRecord:
            usage = {"customer_id": customer_id, "feature_id": "f", "value": value}
            return usage_record({**usage, "idempotency_key": "k"}, NOW)

        receipts = outbox.enqueue([unit("c1", 1), unit("c2", 5)], NOW)  # two records
        receipts += outbox.enqueue([unit("c2", 5)], NOW)
        assert [(r.customer_id, r.duplicate) for r in receipts] == [
            ("c1", False),
            ("c2", False),
            ("c2", True),
        ]
        assert sorted((r.customer_id, r.value) for r, _ in outbox.unsettled()) == [
            ("c1", 1.0),
            ("c2", 5.0),
        ]
        with pytest.raises(ValueError, match="already used"):  # the caller's mistake still
            outbox.enqueue([unit("c1", 2)], NOW)

    @pytest.mark.parametrize("build", [usage_record, event_record])
    def test_a_retry_stamped_anew_is_the_first_record_and_another_stamp_is_not(
        self, outbox: Outbox, build: Any
    ) -> None:
        fields = (
            {"feature_id": "f", "value": 3}
            if build is usage_record
            else {"event_name": "e", "dimensions": {"timestamp": "x", "createdAt": "y"}}
        )
        given = {"customer_id": "c1", "idempotency_key": "k", **fields}
        (first,) = outbox.enqueue([build(given, NOW)], NOW)
        (again,) = outbox.enqueue([build(given, NOW + 5)], NOW + 5)  # no stamp: "now", anew
        assert (first.duplicate, again.duplicate) == (False, True)
        stamp = "created_at" if build is usage_record else "timestamp"
        stamped = {**given, "idempotency_key": "s", stamp: "2027-01-15T08:00:00+00:00"}
        outbox.enqueue([build(stamped, NOW)], NOW)
        (retry,) = outbox.enqueue([build({**given, "idempotency_key": "s"}, NOW + 5)], NOW + 5)
        assert retry.duplicate  # the caller's stamp the first time, none the second
        with pytest.raises(ValueError, match="already used"):  # another stamp of the caller's
            outbox.enqueue([build({**stamped, stamp: "2027-01-15T09:00:00+00:00"}, NOW)], NOW)
        assert outbox.stats(NOW).pending == 2

    def test_dead_letters_keep_the_reason_and_can_be_requeued_or_purged(
        self, outbox: Outbox
    ) -> None:
        assert isinstance(outbox, DeadLetterBox)
        outbox.enqueue(events(2), NOW)
        claimed = outbox.claim(RecordKind.EVENT, 2, "a", now=NOW, lease_s=LEASE_S)
        outbox.settle(dead=[c.id for c in claimed], owner="a", now=NOW, reason="HTTP 400")
        letters = outbox.dead_letters()
        assert [(d.record.idempotency_key, d.reason) for d in letters] == [
            ("e0", "HTTP 400"),
            ("e1", "HTTP 400"),
        ]
        assert outbox.stats(NOW).dead_letters == 2
        assert outbox.requeue([letters[0].id]) == 1
        assert outbox.purge() == 1
        assert [
            c.record.idempotency_key
            for c in outbox.claim(RecordKind.EVENT, 5, "a", now=NOW, lease_s=LEASE_S)
        ] == ["e0"]

    def test_requeue_never_loses_a_dead_letter_whose_key_was_used_again(
        self, outbox: Outbox
    ) -> None:
        assert isinstance(outbox, DeadLetterBox)
        same, other = units(2)
        outbox.enqueue([same, other], NOW)
        claimed = outbox.claim(RecordKind.USAGE, 2, "a", now=NOW, lease_s=LEASE_S)
        outbox.settle(dead=[c.id for c in claimed], owner="a", now=NOW, reason="refused")
        reused = usage_record(  # other usage under u1's key, enqueued after it died
            {"customer_id": "c0", "feature_id": "api_calls", "value": 7, "idempotency_key": "u1"},
            NOW,
        )
        outbox.enqueue([same, reused], NOW)  # u0 again, as it was: the same usage
        assert outbox.requeue() == 0  # both keys are held: nothing moved back
        (kept,) = outbox.dead_letters()
        assert (kept.record.idempotency_key, kept.record.value) == ("u1", 1.0)  # not lost
        assert sorted(r.idempotency_key for r, _ in outbox.unsettled()) == ["u0", "u1"]

    def test_a_wall_clock_stepped_back_strands_no_record(self, outbox: Outbox) -> None:
        # Leased and retried while the clock read an hour ahead (NTP then stepped it back):
        # a lease or retry time set "in the future" must not hold the record that long.
        outbox.enqueue(events(2), NOW)
        ahead = NOW + 3600
        (retried,) = outbox.claim(RecordKind.EVENT, 1, "a", now=ahead, lease_s=LEASE_S)
        outbox.settle(retry=[retried.id], owner="a", now=ahead, retry_at=ahead + 10, reason="503")
        assert len(outbox.claim(RecordKind.EVENT, 1, "a", now=ahead, lease_s=LEASE_S)) == 1
        again = outbox.claim(RecordKind.EVENT, 10, "b", now=NOW + 1, lease_s=LEASE_S)
        assert sorted(c.record.idempotency_key for c in again) == ["e0", "e1"]
        assert outbox.stats(NOW + 1).leased == 2  # leased to b now, by the clock as it reads

    def test_unsettled_lists_pending_and_recently_sent_records(self, outbox: Outbox) -> None:
        outbox.enqueue(events(2), NOW)
        (claimed,) = outbox.claim(RecordKind.EVENT, 1, "a", now=NOW, lease_s=LEASE_S)
        outbox.settle(sent=[claimed.id], owner="a", now=NOW + 1)
        assert [(r.idempotency_key, acked) for r, acked in outbox.unsettled()] == [
            ("e0", NOW + 1),
            ("e1", None),
        ]


def _claim_all(url: str, owner: str, found: list[str]) -> None:
    box = open_outbox(url)
    try:
        while claimed := box.claim(RecordKind.EVENT, 7, owner, now=NOW, lease_s=LEASE_S):
            found.extend([c.record.idempotency_key for c in claimed])
            box.settle(sent=[c.id for c in claimed], owner=owner, now=NOW)
    finally:
        box.close()


class SharedOutboxConformance(OutboxConformance):
    """Behaviour of outboxes that several processes share."""

    def outbox_url(self, base: Path) -> str:
        """A URL that opens the outbox under ``base`` (``sqlite:///...``)."""
        raise NotImplementedError

    def test_processes_claiming_together_never_get_the_same_record(self, tmp_path: Path) -> None:
        box = self.make_outbox(tmp_path)
        box.enqueue(events(300), NOW)
        box.close()
        context = multiprocessing.get_context("spawn")
        with context.Manager() as manager:
            found = manager.list()
            workers = [
                context.Process(target=_claim_all, args=(self.outbox_url(tmp_path), f"w{n}", found))
                for n in range(3)
            ]
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join(timeout=120)
                assert worker.exitcode == 0
            keys = list(found)
        assert sorted(keys) == sorted(f"e{n}" for n in range(300))  # each once, none missing

    def test_read_only_it_reads_what_was_enqueued_and_writes_nothing(self, tmp_path: Path) -> None:
        writer = self.make_outbox(tmp_path)
        writer.enqueue(events(3), NOW)
        writer.close()
        reader = open_outbox(self.outbox_url(tmp_path), read_only=True)
        try:
            assert reader.stats(NOW).pending == 3
            with pytest.raises(StiggCacheError):
                reader.enqueue(events(1, "other"), NOW)
        finally:
            reader.close()
        again = self.make_outbox(tmp_path)
        try:
            assert again.stats(NOW).pending == 3
        finally:
            again.close()

    def test_read_only_where_nothing_is_it_creates_nothing(self, tmp_path: Path) -> None:
        """A file outbox raises StoreNotFoundError; a server's (Redis) opens empty, its
        local outbox not created. Either way, no file or folder appears."""
        before = sorted(tmp_path.rglob("*"))
        try:
            box = open_outbox(self.outbox_url(tmp_path), read_only=True)
        except StoreNotFoundError:
            pass  # a file store: there is nothing to open
        else:
            try:
                assert box.stats(NOW).pending == 0
            finally:
                box.close()
        assert sorted(tmp_path.rglob("*")) == before

    # -- one view of usage (SharedUsage): every outbox several processes share has it -------

    @staticmethod
    def _shared(outbox: Outbox) -> SharedUsage:
        assert isinstance(outbox, SharedUsage), "a shared outbox must give one view of usage"
        return outbox

    def test_changes_show_what_moved_usage_and_only_since_the_cursor(self, outbox: Outbox) -> None:
        shared = self._shared(outbox)
        shared.counted_events = frozenset({"api.request"})  # a meter maps these to a feature
        uncounted = event_record({"customer_id": "c0", "event_name": "page.view"}, NOW)
        outbox.enqueue([*units(3), *events(1), uncounted], NOW)
        start = shared.changes(-1)
        shown = [h.record.idempotency_key for h in start.held]
        # Records that can count as local usage; an event no meter counts may be left out.
        assert sorted(set(shown) - {uncounted.idempotency_key}) == ["e0", "u0", "u1", "u2"]
        assert shared.changes(start.cursor) == UsageChanges(start.cursor, [], [])
        u0, u1, _ = outbox.claim(RecordKind.USAGE, 3, "a", now=NOW, lease_s=LEASE_S)
        outbox.settle(sent=[u0.id], owner="a", now=NOW + 1, counted={u0.id: 41.0})
        outbox.settle(dead=[u1.id], owner="a", now=NOW + 1, reason="refused")
        moved = shared.changes(start.cursor)
        assert [(h.record.idempotency_key, h.acked_at, h.counted) for h in moved.held] == [
            ("u0", NOW + 1, 41.0)
        ]
        assert moved.dead == [("c0", "u1")]  # customer id, idempotency key
        assert moved.cursor > start.cursor
        assert isinstance(outbox, DeadLetterBox)
        outbox.requeue()
        requeued = shared.changes(moved.cursor)
        assert [h.record.idempotency_key for h in requeued.held] == ["u1"]

    def test_enqueue_if_enqueues_only_what_it_admits_judged_on_every_change(
        self, outbox: Outbox
    ) -> None:
        shared = self._shared(outbox)
        start = shared.changes(-1)
        outbox.enqueue(units(2), NOW)  # by "another process", after this one's last look
        shown: list[list[str]] = []

        def admit(changes: UsageChanges) -> bool:
            shown.append([h.record.idempotency_key for h in changes.held])
            return len(shown[-1]) < 2

        (extra,) = units(1, prefix="x")
        assert shared.enqueue_if([extra], NOW, after=start.cursor, admit=admit) is None
        assert shown[-1] == ["u0", "u1"]  # it saw the usage it had not followed yet
        assert [r.idempotency_key for r, _ in outbox.unsettled()] == ["u0", "u1"]
        receipts = shared.enqueue_if([extra], NOW, after=start.cursor, admit=lambda _: True)
        assert receipts is not None
        assert [(r.idempotency_key, r.duplicate) for r in receipts] == [("x0", False)]
        again = shared.enqueue_if([extra], NOW, after=-1, admit=lambda _: False)
        assert again is not None  # a retry of a granted consumption: its first receipt
        assert [(r.idempotency_key, r.duplicate) for r in again] == [("x0", True)]
        assert len(outbox.unsettled()) == 3

    def test_held_of_reads_one_customers_records_and_cursor_where_changes_start(
        self, outbox: Outbox
    ) -> None:
        shared = self._shared(outbox)
        shared.counted_events = frozenset({"api.request"})  # a meter maps these to a feature
        outbox.enqueue([*units(3), *events(6)], NOW)  # units: c0; events: c0, c1, c2, ...
        uncounted = event_record({"customer_id": "c0", "event_name": "page.view"}, NOW)
        outbox.enqueue([uncounted], NOW)  # no meter reads it: it never counts locally
        (on_resource,) = [
            usage_record(
                {
                    "customer_id": "c1",
                    "feature_id": "api_calls",
                    "value": 1,
                    "idempotency_key": "r0",
                    "resource_id": "site-1",
                },
                NOW,
            )
        ]
        outbox.enqueue([on_resource], NOW)
        cursor = shared.cursor()
        assert shared.changes(cursor) == UsageChanges(cursor, [], [])

        def held(customer_id: str, resource_id: str | None = None) -> list[tuple[str, Any]]:
            return sorted(
                (h.record.idempotency_key, h.acked_at)
                for h in shared.held_of(customer_id, resource_id)
            )

        assert held("c0") == [("e0", None), ("e3", None), ("u0", None), ("u1", None), ("u2", None)]
        assert held("c1") == [("e1", None), ("e4", None)]
        assert held("c1", "site-1") == [("r0", None)]
        assert held("nobody") == []
        u0, u1, _ = outbox.claim(RecordKind.USAGE, 3, "a", now=NOW, lease_s=LEASE_S)
        outbox.settle(sent=[u0.id], owner="a", now=NOW + 1)
        outbox.settle(dead=[u1.id], owner="a", now=NOW + 1, reason="refused")
        assert [k for k, _ in held("c0") if k.startswith("u")] == ["u0", "u2"]  # dead: gone
        assert ("u0", NOW + 1) in held("c0")  # sent: with its acknowledgement
        assert shared.cursor() > cursor
