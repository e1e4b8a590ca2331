"""Local usage that Stigg has not reflected yet, per customer+resource+feature.

While Stigg is unreachable, a customer at their limit must still be denied:
metered checks add what this process (and the outbox it shares) has recorded
but Stigg's snapshot does not include yet. An entry stops counting once a
snapshot fetched at least ``settle_s`` after Stigg acknowledged it exists
(Stigg aggregates asynchronously), or sooner on evidence: Stigg answers a
usage report with the feature's usage counting it (``currentUsage``), and a
snapshot that shows at least that much already includes the record (below).
(This reads usage as only growing: a negative delta or a ``SET`` between the two
could fool it, so ``SET`` entries settle by time alone.) A ``SET`` replaces everything before it.
For ``settle_s``, acknowledgements and snapshots are ordered by Stigg's side of the
exchange: an acknowledgement is dated when its request left (Stigg counts a record
as it takes it in, before its answer is back), a snapshot when its answer arrived.

An acknowledgement's count orders it against a snapshot whenever they were
fetched: usage only grows, so a snapshot showing at least the usage Stigg answered
once it counted a record was read after that record counted, and shows it. So a
record Stigg took in whose answer was lost, and that a snapshot fetched before its
resend already shows, counts once as soon as the resend is acknowledged (Stigg
deduplicates it and answers its count). Until then it is in doubt and counts
locally: a check may read it twice for that long, never not at all. Each
record is judged by its own count, never by a sibling's: a count answered for one
record may include another host's record still in flight, which a check would
otherwise add twice. And a check never reads less than Stigg last answered.
Entries stamped before the usage period's start (or a rolled-over period's
end) do not count.

Checks read this on the hot path, so totals are kept incrementally: a read
costs O(1) plus the entries it retires.

Memory follows what may still count, never what ever did: a tally left with
nothing goes at once, and an entry Stigg acknowledged ``keep_acked_s`` ago goes
whether or not a check read it since (the outbox forgets sent records then too,
so no process of the host counts it any more). Keys are scoped to their
customer: two customers may use the same idempotency key.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict, deque
from collections.abc import Iterable, Mapping

import attrs

DEFAULT_SETTLE_S = 30.0  # Stigg aggregates events "typically within ~10 seconds"
DEFAULT_KEEP_ACKED_S = 3600.0  # outboxes keep sent records as long (``KEEP_SENT_S``)
EXPIRY_STEP_S = 60.0  # acknowledged entries are looked over at most this often (ack time)
# Python's dicts keep the table of their largest size: the ledger's are copied anew once
# they hold less than a quarter of their peak (past this many), so 10,000 customers
# settled leave no 10,000-slot tables behind.
COMPACT_ABOVE = 64

TallyKey = tuple[str, str | None, str]  # customer_id, resource_id, feature_id
UsageKey = tuple[str, str]  # customer_id, idempotency_key: a record's identity


@attrs.frozen
class LocalUsage:
    """What a check adds to (or puts in place of) the snapshot's usage."""

    delta: float
    absolute: float | None = None  # a SET not yet reflected: replaces the snapshot's usage
    # False: part of the host's usage could not be read (a shared outbox that did not
    # answer): a check must not grant on it, whatever it adds up to
    complete: bool = True

    def applied_to(self, snapshot_usage: float) -> float:
        """The usage a check should see."""
        base = snapshot_usage if self.absolute is None else self.absolute
        return base + self.delta


@attrs.define
class _Entry:
    at: float
    value: float
    is_set: bool
    acked_at: float | None = None
    counted: float | None = None  # Stigg's usage of the feature once it counted this entry


@attrs.frozen
class _Seen:
    """What the snapshot in hand shows: an acknowledged entry it includes stops counting."""

    reflected_before: float  # entries acknowledged at or before this are in it (settle_s)
    fetched_at: float  # -inf: no snapshot
    usage: float | None  # the snapshot's usage of the feature (None: not known)

    def includes(self, stamped_at: float, acked_at: float, counted: float | None) -> bool:
        """Whether the snapshot shows an acknowledged entry: ``settle_s`` passed between its
        acknowledgement and the fetch, or the snapshot shows at least the usage Stigg
        answered once it counted the entry (usage only grows: before the entry, Stigg's
        usage was lower), and the entry is not stamped after the fetch (another period)."""
        if acked_at <= self.reflected_before:
            return True
        return (
            counted is not None
            and self.usage is not None
            and stamped_at <= self.fetched_at
            and self.usage >= counted
        )


_NO_SNAPSHOT = _Seen(-math.inf, -math.inf, None)


class _Tally:
    """Entries of one customer+resource+feature, with running totals."""

    def __init__(self) -> None:
        self.entries: dict[str, _Entry] = {}
        self.floor = -math.inf
        # The last answer and the inputs it was for; cleared by every change, so a
        # check may read it without the lock (one reference read is atomic).
        self.memo: tuple[float | None, float | None, float, LocalUsage | None] | None = None
        self._reset()

    def _reset(self) -> None:
        self.set_key: str | None = None
        self.unacked: dict[str, float] = {}
        self.unacked_total = 0.0
        # acknowledged entries, oldest acknowledgement first: (acked_at, key, value, counted)
        self.acked: deque[tuple[float, str, float, float | None]] = deque()
        self.acked_total = 0.0
        # Stigg's highest answered usage of the feature since the last SET (or roll): a
        # check never reads less
        self.reading = -math.inf

    def add(self, key: str, entry: _Entry) -> bool:
        """Count an entry; false if it was known (or is older than the period)."""
        self.memo = None
        if key in self.entries or entry.at < self.floor:
            return False
        self.entries[key] = entry
        self._apply(key, entry)
        return True

    def _apply(self, key: str, entry: _Entry) -> None:
        if entry.is_set:
            if self.set_key is not None and self.entries[self.set_key].at > entry.at:
                return  # an older SET arriving late changes nothing
            self._reset()
            self.set_key = key
            return
        if entry.acked_at is None:
            self.unacked[key] = entry.value
            self.unacked_total += entry.value
        else:
            self._acked(entry.acked_at, key, entry.value, entry.counted)

    def _acked(self, acked_at: float, key: str, value: float, counted: float | None) -> None:
        self.acked.append((acked_at, key, value, counted))
        self.acked_total += value
        if counted is not None:
            self.reading = max(self.reading, counted)

    def ack(self, key: str, acked_at: float, counted: float | None) -> None:
        self.memo = None
        entry = self.entries.get(key)
        if entry is None or entry.acked_at is not None:
            return
        entry.acked_at, entry.counted = acked_at, counted
        value = self.unacked.pop(key, None)
        if value is not None:
            self.unacked_total -= value
            self._acked(acked_at, key, value, counted)

    def drop(self, key: str) -> None:
        """An entry that no longer counts (its record was dead-lettered)."""
        self.memo = None
        if self.entries.pop(key, None) is not None:
            self._rebuild(self.entries.items())

    def expire(self, before: float) -> bool:
        """Forget entries Stigg acknowledged before ``before``; whether any went."""
        kept = [
            (k, e) for k, e in self.entries.items() if e.acked_at is None or e.acked_at > before
        ]
        if len(kept) == len(self.entries):
            return False
        self.memo = None
        self._rebuild(kept)
        return True

    def oldest_ack(self) -> float | None:
        """When the earliest acknowledgement still held came (``None``: none is)."""
        acks = [e.acked_at for e in self.entries.values() if e.acked_at is not None]
        return min(acks, default=None)

    def _rebuild(self, kept: Iterable[tuple[str, _Entry]]) -> None:
        """Count ``kept`` alone, oldest first (a SET replaces what came before it)."""
        self.entries = dict(sorted(kept, key=lambda item: item[1].at))
        self._reset()
        for key, entry in self.entries.items():
            self._apply(key, entry)

    def read(self, seen: _Seen, floor: float) -> LocalUsage | None:
        if floor > self.floor:
            self._roll(floor)
        while self.acked and seen.includes(
            self.entries[self.acked[0][1]].at, self.acked[0][0], self.acked[0][3]
        ):
            _, key, value, _ = self.acked.popleft()
            self.acked_total -= value
            self.entries.pop(key, None)
        reflected_before = seen.reflected_before
        absolute = None
        if self.set_key is not None:
            entry = self.entries[self.set_key]
            if entry.acked_at is None or entry.acked_at > reflected_before:
                absolute = entry.value
        delta = self.unacked_total + self.acked_total
        if absolute is None and seen.usage is not None and self.reading > seen.usage + delta:
            return LocalUsage(0.0, absolute=self.reading)  # Stigg answered more than that
        if absolute is None and not delta:
            return None
        return LocalUsage(delta, absolute)

    def _roll(self, floor: float) -> None:
        self.floor = floor
        self._rebuild([(k, e) for k, e in self.entries.items() if e.at >= floor])


class UsageLedger:
    """Thread-safe tallies of local usage, fed by the outbox."""

    def __init__(
        self, settle_s: float = DEFAULT_SETTLE_S, keep_acked_s: float = DEFAULT_KEEP_ACKED_S
    ) -> None:
        self.settle_s = settle_s
        self.keep_acked_s = keep_acked_s
        self._tallies: dict[TallyKey, _Tally] = {}
        self._by_key: dict[UsageKey, list[TallyKey]] = {}  # entries not yet acknowledged
        # Tallies holding acknowledged entries, by when the oldest of them came (about in
        # that order): what to expire when.
        self._acked: OrderedDict[TallyKey, float] = OrderedDict()
        self._expired_before = -math.inf  # entries acknowledged before this are forgotten
        self._peak = 0  # the most tallies held since the tables were last copied anew
        self._lock = threading.Lock()
        # Bumped after every change: an answer computed from what was read at one
        # generation holds while it stays (a check may keep it without the lock).
        self.generation = 0

    def renew_lock(self) -> None:
        """A lock of this process's own (after ``os.fork``: the parent's may be held for good)."""
        self._lock = threading.Lock()

    def record(
        self,
        scope: TallyKey,
        idempotency_key: str,
        *,
        value: float,
        at: float,
        is_set: bool = False,
        acked_at: float | None = None,
        counted: float | None = None,
    ) -> None:
        """Count ``value`` (or set it, for SET) for a feature, stamped ``at`` (``acked_at``
        and ``counted`` as :meth:`acknowledge` takes them, when it was acknowledged)."""
        with self._lock:
            if acked_at is not None and acked_at <= self._expired_before:
                return  # acknowledged so long ago that no process counts it any more
            tally = self._tallies.get(scope)
            if tally is None:
                tally = self._tallies[scope] = _Tally()
                self._peak = max(self._peak, len(self._tallies))
            entry = _Entry(at, value, is_set, acked_at, None if acked_at is None else counted)
            added = tally.add(idempotency_key, entry)
            self.generation += added
            if not added:
                self._discard_if_empty(scope, tally)
            elif acked_at is None:  # an acknowledgement or a dead letter may follow
                self._by_key.setdefault((scope[0], idempotency_key), []).append(scope)
            else:
                self._acked.setdefault(scope, acked_at)

    def acknowledge(
        self,
        keys: Iterable[UsageKey],
        acked_at: float,
        counted: Mapping[UsageKey, float] | None = None,
    ) -> None:
        """Stigg accepted these records at ``acked_at`` (wall time); ``counted``: by record,
        the feature's usage Stigg answered once it counted the record (``currentUsage``).
        Entries acknowledged ``keep_acked_s`` before it are forgotten on the way."""
        evidence = counted or {}
        with self._lock:
            changed = False
            for key in keys:
                for scope in self._by_key.pop(key, ()):
                    tally = self._tallies.get(scope)
                    if tally is not None:
                        tally.ack(key[1], acked_at, evidence.get(key))
                        self._acked.setdefault(scope, acked_at)
                        changed = True
            changed = self._expire(acked_at - self.keep_acked_s) or changed
            self.generation += changed  # after the change: an answer read before it is not kept

    def forget(self, keys: Iterable[UsageKey]) -> None:
        """These records no longer count (dead-lettered: Stigg will never have them)."""
        with self._lock:
            changed = False
            for key in keys:
                for scope in self._by_key.pop(key, ()):
                    tally = self._tallies.get(scope)
                    if tally is not None:
                        tally.drop(key[1])
                        self._discard_if_empty(scope, tally)
                        changed = True
            self.generation += changed

    def _expire(self, before: float) -> bool:
        """Forget entries acknowledged before ``before`` (looked over once per
        ``EXPIRY_STEP_S`` of acknowledgement time); whether any went. Under the lock."""
        if before < self._expired_before + EXPIRY_STEP_S:
            return False
        self._expired_before = before
        due: list[TallyKey] = []
        while self._acked:
            scope, first = next(iter(self._acked.items()))
            if first > before:
                break
            del self._acked[scope]
            due.append(scope)
        changed = False
        for scope in due:
            tally = self._tallies.get(scope)
            if tally is None:
                continue
            changed = tally.expire(before) or changed
            oldest = tally.oldest_ack()
            if oldest is not None:  # acknowledged later: looked at again once that is old
                self._acked[scope] = oldest
            self._discard_if_empty(scope, tally)
        return changed

    def _discard_if_empty(self, scope: TallyKey, tally: _Tally) -> None:
        """A tally with nothing left to count goes (under the lock): memory follows what may
        still count. A check holding it meanwhile reads no usage, as it would have."""
        if not tally.entries and self._tallies.get(scope) is tally:
            del self._tallies[scope]
            self._acked.pop(scope, None)
            if self._peak > COMPACT_ABOVE and 4 * len(self._tallies) < self._peak:
                self._tallies = dict(self._tallies)
                self._by_key = dict(self._by_key)
                self._acked = OrderedDict(self._acked)
                self._peak = len(self._tallies)

    def local_usage(
        self,
        scope: TallyKey,
        snapshot_fetched_at: float | None,
        floor: float | None,
        snapshot_usage: float | None = None,
    ) -> LocalUsage | None:
        """Usage to add for ``scope`` given the snapshot in hand (``None``: no snapshot) and
        the usage it shows for the feature."""
        tally = self._tallies.get(scope)
        if tally is None:
            return None
        lowest = -math.inf if floor is None else floor
        memo = tally.memo
        if (
            memo is not None
            and memo[0] == snapshot_fetched_at
            and memo[1] == snapshot_usage
            and memo[2] == lowest
        ):
            return memo[3]  # nothing changed since: no lock on the hot path
        if snapshot_fetched_at is None:
            seen = _NO_SNAPSHOT
        else:
            seen = _Seen(snapshot_fetched_at - self.settle_s, snapshot_fetched_at, snapshot_usage)
        with self._lock:
            result = tally.read(seen, lowest)
            tally.memo = (snapshot_fetched_at, snapshot_usage, lowest, result)
            self._discard_if_empty(scope, tally)
            return result

    def __len__(self) -> int:
        return sum(len(t.entries) for t in self._tallies.values())
