"""The usage outbox on Redis, shared by every process of a fleet.

Records live in hashes; per kind, a *ready* sorted set (scored by the record's
own time, so the oldest is sent first wherever it waited before), a *delayed*
one (scored by retry time) and a *leased* one (scored by lease end, on Redis's
clock). Every change is one Lua script, so it is atomic:
two processes never lease the same record, and a lease that runs out (its
sender was SIGKILLed) makes the record claimable by anyone. At-least-once to
Stigg, deduplicated there by the unchanged idempotency keys and stamps.

While Redis is unreachable, usage goes to a local SQLite outbox (durable the
moment ``enqueue`` returns) and is sent from there if Stigg answers; when
Redis returns, what is left is moved over. Ids of local records are negative.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from importlib.resources import files
from typing import Any, cast

from stigg_cache.core.reconcile import JournalRow
from stigg_cache.core.share import HeadroomShare
from stigg_cache.errors import StoreError
from stigg_cache.outbox.base import (
    CLOCK_STEP_S,
    KEEP_SENT_S,
    Claimed,
    DeadLetter,
    Held,
    OutboxStats,
    UsageChanges,
)
from stigg_cache.outbox.records import (
    Receipt,
    RecordKind,
    UsageRecord,
)
from stigg_cache.outbox.sqlite import SqliteOutbox
from stigg_cache.stores import redact_url
from stigg_cache_redis._connection import OUTBOX_TIMEOUT_S, Gate, RedisSettings
from stigg_cache_redis._local import default_local_outbox, warn_of_unnamed_local_outbox
from stigg_cache_redis._reads import Reads
from stigg_cache_redis._records import as_held, decode, encode, identity, readable, reused_key
from stigg_cache_redis._sets import set_scope
from stigg_cache_redis.journal import RedisJournal
from stigg_cache_redis.pacing import PROCESS_SEEN_S, RedisBucket

logger = logging.getLogger("stigg_cache_redis")
MOVE_BATCH = 500
# A move (one batch, one bulk write bounded by OUTBOX_TIMEOUT_S) holds the local records this
# long: a mover SIGKILLed mid-move strands them no longer. One that outlives it is harmless:
# a record moved twice is a duplicate in Redis (same key and payload), added once.
MOVE_LEASE_S = 10.0
# How often a sender looks for records in the host's local outbox (another process's, left
# there during its own Redis fault): a sibling that never faulted would otherwise never look.
LOCAL_LOOK_S = 1.0
# Names of the outbox's keys, passed to every script in this order (see outbox_prelude.lua).
_KEYS = (
    *("seq", "rec", "pay", "ident", "idx", "att", "pending", "sent", "dead", "dinfo", "owners"),
    *(
        "event:ready",
        "event:delayed",
        "event:leased",
        "usage:ready",
        "usage:delayed",
        "usage:leased",
    ),
    *("event:delayed_since", "event:leased_since", "usage:delayed_since", "usage:leased_since"),
    *("counted", "feed", "feed_seq", "customers", "schema", "scoped", "feed_epoch"),
    *("latest_set", "set_sending", "feed_indexed", "environment"),
)
# The scripts' answer when the outbox holds another Stigg environment's usage.
_FOREIGN = "STIGG_CACHE_FOREIGN_ENVIRONMENT"


def _script(name: str) -> str:
    return (files("stigg_cache_redis") / f"{name}.lua").read_text(encoding="utf-8")


class ForeignEnvironmentError(StoreError):
    """The outbox in Redis holds another Stigg environment's usage: this client neither adds
    to it nor sends from it (its usage stays in its local outbox, and is sent from there)."""


class RedisOutbox:
    """Outbox, dead letters and the fleet's rate budgets in one Redis."""

    def __init__(
        self,
        settings: RedisSettings,
        local: SqliteOutbox | None = None,
        *,
        environment: str | None = None,
    ) -> None:
        """Connect lazily; open (creating) the local fallback outbox now.

        Args:
            environment: the Stigg environment's token (base URL and API key digested):
                names the default local outbox, and the outbox in Redis takes in and hands
                out no usage of another environment (``None``: not known, not checked).
        """
        self.settings = settings
        self.environment = environment
        self._redis = settings.connect(at_least_s=OUTBOX_TIMEOUT_S)
        tag = f"{{stigg-cache:{settings.namespace}}}"  # one hash tag: one slot for the scripts
        self._keys = [f"{tag}:outbox:{name}" for name in _KEYS]  # in the scripts' order
        self._key_of = dict(zip(_KEYS, self._keys, strict=True))
        self._bucket_prefix = f"{tag}:bucket:"
        self._processes_key = f"{tag}:processes"  # who took from the fleet's buckets lately
        self._nonce = uuid.uuid4().hex[:8]
        # Processes that took from the fleet's buckets in the last PROCESS_SEEN_S, as Redis
        # last said (0: never reached): while it is unreachable, each paces at its share.
        self.processes_seen = 0
        self._gate = Gate(f"redis outbox {redact_url(settings.url)}")
        self._reads = Reads(self._redis, self._gate, self._key_of)
        prelude = _script("outbox_prelude")
        self._scripts = {
            name: self._redis.register_script(prelude + _script(f"outbox_{name}"))
            for name in (
                "enqueue",
                "claim",
                "settle",
                "release",
                "dead",
                "changes",
                "held_of",
                "index",
                "scope",
                "catch_up",
            )
        }
        self._bucket_script = self._redis.register_script(_script("bucket"))
        self._journal = RedisJournal(self._redis, tag, self._gate)
        if local is None and settings.local_outbox is None:
            warn_of_unnamed_local_outbox(settings.namespace)
        self.local = local or SqliteOutbox(
            settings.local_outbox or default_local_outbox(settings, environment)
        )
        self._local_waiting = True  # records a previous run left there are moved first
        self._local_looked = -math.inf  # monotonic time this process last looked there
        self._local_seq = self.local.cursor()  # the local outbox's changes followed from here
        self._mover = f"mover:{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._down = False
        # Granted by consumptions while Redis's usage could not be read, by (customer,
        # resource, feature): what of its share of the headroom this process has spent.
        self._spent_blind: dict[tuple[str, str | None, str], float] = {}
        self._foreign: str | None = None  # why the outbox in Redis is another environment's
        self._indexed = False  # by customer: records an older version wrote may not be
        self._scoped = False  # keys scoped to their customer: an older version's are not
        self._epoch = ""  # of the usage feed followed here ("": none seen yet)
        self._claims: dict[int, tuple[str, str]] = {}  # id -> owner, identity, until settled
        self.counted_events: frozenset[str] = frozenset()  # as SqliteOutbox's

    # -- the Outbox protocol ------------------------------------------------------------

    def enqueue(self, records: Sequence[UsageRecord], now: float) -> list[Receipt]:
        if not records:
            return []
        try:
            if self._foreign is not None:  # senders look again with every claim
                raise ForeignEnvironmentError(self._foreign)
            flags = self._enqueue_remote(records)
        except StoreError as error:
            self._fell_back(error)
            receipts = self.local.enqueue(records, now)
            self._local_waiting = True
            return receipts
        return [
            Receipt(r.idempotency_key, r.kind, r.customer_id, bool(flag))
            for r, flag in zip(records, flags, strict=True)
        ]

    def claim(
        self, kind: RecordKind, limit: int, owner: str, *, now: float, lease_s: float
    ) -> list[Claimed]:
        if self._local_waiting or self._local_holds_records(now):
            self._move_local(now)
        try:
            # Leases on Redis's clock: a host whose clock runs ahead takes no live lease.
            rows = self._run(
                "claim",
                [
                    kind.value,
                    limit,
                    owner,
                    repr(lease_s),
                    repr(CLOCK_STEP_S),
                    repr(now),
                    self.environment or "",
                ],
            )
        except StoreError as error:
            self._fell_back(error)
            local = self.local.claim(kind, limit, owner, now=now, lease_s=lease_s)
            return [Claimed(-c.id, c.record, c.attempts) for c in self._sendable(local, owner, now)]
        self._foreign = None
        claimed: list[Claimed] = []
        for at in range(0, len(rows), 5):
            id_ = int(rows[at])
            self._claims[id_] = (owner, bytes(rows[at + 4]).decode())
            try:
                record = decode(rows[at + 1], rows[at + 2])
            except ValueError as error:  # one bad record never stops the fleet's usage
                reason = f"unreadable in the outbox: {error}"
                self.settle(dead=[id_], owner=owner, now=now, reason=reason)
                continue
            claimed.append(Claimed(id_, record, int(rows[at + 3])))
        return claimed

    def settle(
        self,
        *,
        sent: Sequence[int] = (),
        retry: Sequence[int] = (),
        dead: Sequence[int] = (),
        owner: str,
        now: float,
        retry_at: float = 0.0,
        reason: str = "",
        counted: Mapping[int, float] | None = None,
    ) -> None:
        counts = counted or {}
        local = [[-i for i in ids if i < 0] for ids in (sent, retry, dead)]
        if any(local):
            self.local.settle(
                sent=local[0],
                retry=local[1],
                dead=local[2],
                owner=owner,
                now=now,
                retry_at=retry_at,
                reason=reason,
                counted={-i: value for i, value in counts.items() if i < 0},
            )
        remote = [[i for i in ids if i > 0] for ids in (sent, retry, dead)]
        if any(remote):
            # Each record by the identity it was claimed with: ids are given again after a
            # failover, and the one settled must be the one sent (outbox_settle.lua).
            identity = {i: self._claimed_as(i, owner) for ids in remote for i in ids}
            remote_counts = [(i, value) for i, value in counts.items() if i in identity]
            self._run(
                "settle",
                [
                    owner,
                    repr(now),
                    repr(max(0.0, retry_at - now)),  # from now on Redis's clock
                    reason,
                    repr(now - KEEP_SENT_S),
                    *(len(ids) for ids in remote),
                    len(remote_counts),
                    *(item for ids in remote for i in ids for item in (i, identity[i])),
                    *(item for i, n in remote_counts for item in (i, identity[i], repr(n))),
                ],
            )

    def _claimed_as(self, id_: int, owner: str) -> str:
        """The identity record ``id_`` had when ``owner`` claimed it, forgotten now it is
        settled (``""``: not claimed here, and settled only if it has none either)."""
        claimed_by, identity = self._claims.pop(id_, (owner, ""))
        return identity if claimed_by == owner else ""

    def release(self, owner: str) -> int:
        for id_, (claimed_by, _) in list(self._claims.items()):
            if claimed_by == owner:
                self._claims.pop(id_, None)
        given = self.local.release(owner)
        try:
            given += int(self._run("release", [owner]))
        except StoreError as error:  # leases run out by themselves
            self._fell_back(error)
        return given

    def stats(self, now: float) -> OutboxStats:
        local = self.local.stats(now)
        try:
            if self._foreign is not None:  # what Redis holds is not this client's to count
                if not local.pending:  # all of ours sent (the ERROR was logged)
                    return local
                raise ForeignEnvironmentError(self._foreign)
            remote = self._reads.stats()
            self._recovered()
        except StoreError as error:
            self._fell_back(error)
            return OutboxStats(
                local.pending,
                local.leased,
                local.sent_unsettled,
                local.dead_letters,
                local.oldest_pending_at,
                problem=f"{error}; {local.pending} record(s) wait there"
                if isinstance(error, ForeignEnvironmentError)
                else f"{error}; {local.pending} record(s) wait in the local outbox "
                f"{self.local.path} and move to Redis when it answers",
            )
        oldest = [at for at in (remote.oldest_pending_at, local.oldest_pending_at) if at]
        return OutboxStats(
            remote.pending + local.pending,
            remote.leased + local.leased,
            remote.sent_unsettled + local.sent_unsettled,
            remote.dead_letters + local.dead_letters,
            min(oldest) if oldest else None,
        )

    def unsettled(self) -> list[tuple[UsageRecord, float | None]]:
        local = self.local.unsettled()
        try:
            return self._reads.unsettled() + local
        except StoreError as error:
            self._fell_back(error)
            return local

    def close(self) -> None:
        self.local.close()
        self._redis.close()
        self._redis.connection_pool.disconnect()

    # -- one view of usage (SharedUsage) ------------------------------------------------

    def changes(self, after: int) -> UsageChanges:
        """What moved local usage in Redis since ``after``, and in the host's local outbox
        since this process last looked: a sibling that sent or dead-lettered a record from
        there (during a Redis fault) settles it here too, else it would count here for ever.

        Raises:
            StoreError: Redis did not answer.
        """
        rows = self._run("changes", [after, self._epoch])
        self._follow_epoch(rows[1].decode(), reset=rows[2] == 1)
        local = self.local.changes(self._local_seq)
        self._local_seq = local.cursor
        held: list[Held] = []
        dead: list[tuple[str, str]] = []
        for at in range(3, len(rows), 7):
            state, acked, raw, payload, counted = rows[at + 1 : at + 6]
            record = readable(raw, payload)
            if record is None:
                continue  # never counted: nothing to add or take back
            if state == b"dead":
                dead.append((record.customer_id, record.idempotency_key))
            else:
                held.append(as_held(record, acked, counted))
        self._recovered()
        return UsageChanges(int(rows[0]), held + local.held, dead + local.dead)

    def cursor(self) -> int:
        """The feed's latest sequence number.

        Raises:
            StoreError: Redis did not answer.
        """
        seq, epoch = self._gate.call(
            lambda: cast(
                "list[bytes | None]", self._redis.mget(self._keys_of("feed_seq", "feed_epoch"))
            )
        )
        self._follow_epoch((epoch or b"").decode(), reset=False)
        self._recovered()
        return int(seq or 0)

    def _follow_epoch(self, epoch: str, *, reset: bool) -> None:
        """Remember the feed's epoch; say once that a feed read whole started anew."""
        if reset:
            logger.warning(
                "stigg_cache_redis.feed_reset: the usage feed in Redis started anew or went "
                "back (Redis restarted empty or failed over); every record held was read again",
                extra={"event": "stigg_cache_redis.feed_reset"},
            )
        if epoch:
            self._epoch = epoch

    def held_of(self, customer_id: str, resource_id: str | None) -> list[Held]:
        """One customer's records held in Redis (one range of an index), and in the local
        outbox while they wait there.

        Raises:
            StoreError: Redis did not answer.
        """
        if not self._indexed:
            self._index_by_customer()
        counted = sorted(self.counted_events)
        while self._run("catch_up", counted) == 1:  # what an older version wrote since
            pass
        rows = self._run("held_of", [customer_id])
        held = self.local.held_of(customer_id, resource_id)
        for at in range(0, len(rows), 5):
            acked, raw, payload, counted = rows[at + 1 : at + 5]
            record = readable(raw, payload)
            if record is not None and record.resource_id == resource_id:
                held.append(as_held(record, acked, counted))
        self._recovered()
        return held

    def enqueue_if(
        self,
        records: Sequence[UsageRecord],
        now: float,
        *,
        after: int,
        admit: Callable[[UsageChanges], bool],
    ) -> list[Receipt] | None:
        """Judge on every change since ``after``, enqueue if nothing moved usage meanwhile,
        else judge again on what did (every round some process got its usage in).

        While Redis is unreachable: judged on what this process knows, enqueued locally, and
        granted only within this process's share of the headroom (one over the processes
        Redis last saw): together, the fleet's processes never grant past the limit.
        """
        while True:
            try:
                changes = self.changes(after)
            except StoreError:
                return self._enqueue_blind(records, now, after, admit)
            admitted = admit(changes)
            try:
                flags = self._enqueue_remote(records, expected=changes.cursor, admitted=admitted)
            except StoreError as error:  # a judgement we cannot make durable there
                self._fell_back(error)
                return self.enqueue(records, now) if admitted else None
            if flags == [-3]:
                return None
            if flags != [-2]:
                return [
                    Receipt(r.idempotency_key, r.kind, r.customer_id, bool(flag))
                    for r, flag in zip(records, flags, strict=True)
                ]
            after = changes.cursor

    def _enqueue_blind(
        self,
        records: Sequence[UsageRecord],
        now: float,
        after: int,
        admit: Callable[[UsageChanges], bool],
    ) -> list[Receipt] | None:
        """``enqueue_if`` while Redis's usage cannot be read: within this process's share."""
        scopes = {(r.customer_id, r.resource_id, r.name) for r in records}
        spent = sum(self._spent_blind.get(scope, 0.0) for scope in scopes)
        processes = max(1, self.processes_seen)
        share = HeadroomShare(1 / processes, spent, processes)
        if not admit(UsageChanges(after, [], [], share=share)):
            return None
        receipts = self.enqueue(records, now)
        for record in records:
            scope = (record.customer_id, record.resource_id, record.name)
            self._spent_blind[scope] = self._spent_blind.get(scope, 0.0) + record.value
        return receipts

    # -- dead letters (DeadLetterBox) ------------------------------------------------

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        letters = [
            DeadLetter(-d.id, d.record, d.reason, d.dead_at, d.attempts)
            for d in self.local.dead_letters(limit)
        ]
        letters += self._reads.dead_letters(limit)
        letters.sort(key=lambda d: (d.dead_at, abs(d.id)))
        return letters[:limit]

    def requeue(self, ids: Sequence[int] | None = None) -> int:
        return self._on_dead("requeue", ids)

    def purge(self, ids: Sequence[int] | None = None) -> int:
        return self._on_dead("purge", ids)

    # -- shared pacing (SharedPacing) --------------------------------------------------

    def rate_bucket(self, name: str, rate: float, capacity: float) -> RedisBucket:
        """The fleet's bucket ``name``; while Redis is unreachable, this process's share of it."""
        return RedisBucket(self.bucket_call, lambda: self.processes_seen, name, rate, capacity)

    def journal_add(
        self, rows: Sequence[JournalRow], uncovered: int, *, size: int, chars: int
    ) -> None:
        """The host's offline decisions counted in (``SharedJournal``; see ``journal.py``)."""
        self._journal.add(rows, uncovered, size=size, chars=chars)

    def journal_take(self) -> tuple[list[JournalRow], int]:
        """Every offline decision of the host, taken (``SharedJournal``)."""
        return self._journal.take()

    def bucket_call(self, name: str, *args: str | float) -> float:
        """One atomic operation of the bucket script on bucket ``name`` (see ``bucket.lua``);
        notes how many processes of the fleet take from its buckets.

        Raises:
            StoreError: Redis did not answer.
        """
        process = f"{socket.gethostname()}:{os.getpid()}:{self._nonce}"  # a child is another
        keys = [self._bucket_prefix + name, self._processes_key]
        answer, seen = self._gate.call(
            lambda: self._bucket_script(keys=keys, args=[*args, process, repr(PROCESS_SEEN_S)])
        )
        self.processes_seen = int(seen)
        return float(answer)

    # -- internals -----------------------------------------------------------------------

    def _key(self, name: str) -> str:
        return self._key_of[name]

    def _keys_of(self, *names: str) -> list[str]:
        return [self._key_of[name] for name in names]

    def _run(self, script: str, args: list[Any]) -> Any:
        try:
            return self._gate.call(lambda: self._scripts[script](keys=self._keys, args=args))
        except StoreError as error:
            if _FOREIGN not in str(error):
                raise
            raise ForeignEnvironmentError(
                f"the outbox in {redact_url(self.settings.url)} (namespace "
                f"{self.settings.namespace!r}) holds the usage of another Stigg environment "
                "(another API key or base URL): this client's usage waits in its local outbox "
                f"{self.local.path} and is sent from there; give each environment a namespace "
                "of its own (?namespace=staging)"
            ) from None

    def _index_by_customer(self) -> None:
        """Index by customer what an older version wrote (once per outbox, in batches)."""
        counted = sorted(self.counted_events)
        cursor = self._run("index", ["0", *counted])
        while cursor != b"0":
            cursor = self._run("index", [cursor, *counted])
        self._indexed = True

    def _scope_keys(self) -> None:
        """Scope to its customer each key an older version stored (once per outbox, in
        batches): a retry of a record enqueued before the upgrade is then a duplicate."""
        cursor = self._run("scope", ["0"])
        while cursor != b"0":
            cursor = self._run("scope", [cursor])
        self._scoped = True

    def _enqueue_remote(
        self, records: Sequence[UsageRecord], *, expected: int | None = None, admitted: bool = True
    ) -> list[int]:
        """Flags as ``outbox_enqueue.lua`` returns them (``[-2]``, ``[-3]``: not enqueued)."""
        if not self._scoped:
            self._scope_keys()
        args: list[Any] = ["" if expected is None else expected, int(admitted), len(records)]
        for record in records:
            args += [
                identity(record),
                repr(record.stamped_at),
                encode(record),
                record.payload,
                record.customer_id if record.counts_locally(self.counted_events) else "",
                "" if record.stamp_given else "1",  # a retry may carry another stamp
            ]
        args.append(self.environment or "")
        flags = self._run("enqueue", args)
        if flags and flags[0] == -1:
            raise reused_key(records[int(flags[1])])
        self._recovered()
        return [int(flag) for flag in flags]

    def _local_holds_records(self, now: float) -> bool:
        """Whether the host's local outbox holds records (looked at once a second): any
        process of the host may have left some there, during a Redis fault of its own."""
        looked = time.monotonic()
        if looked - self._local_looked < LOCAL_LOOK_S:
            return False
        self._local_looked = looked
        return self.local.stats(now).pending > 0

    def _move_local(self, now: float) -> None:
        """Move what waits in the local outbox to Redis (same keys, same stamps)."""
        try:
            for kind in RecordKind:
                while batch := self.local.claim(
                    kind, MOVE_BATCH, self._mover, now=now, lease_s=MOVE_LEASE_S
                ):
                    self._move(batch, now)
        except StoreError:
            self.local.release(self._mover)
            return
        self._local_waiting = self.local.stats(now).pending > 0  # some wait for a retry time

    def _move(self, batch: list[Claimed], now: float) -> None:
        try:
            self._enqueue_remote([c.record for c in batch])
        except ValueError:  # a key reused with another payload: find it, move the rest
            for claimed in batch:
                try:
                    self._enqueue_remote([claimed.record])
                except ValueError as error:
                    self.local.settle(
                        dead=[claimed.id], owner=self._mover, now=now, reason=str(error)
                    )
                    batch = [c for c in batch if c is not claimed]
        self.local.forget([c.id for c in batch])
        logger.info(
            "stigg_cache_redis.outbox_moved: %d record(s) moved from the local outbox to Redis",
            len(batch),
            extra={"event": "stigg_cache_redis.outbox_moved", "records": len(batch)},
        )

    def _on_dead(self, action: str, ids: Sequence[int] | None) -> int:
        if ids is None:
            local_done = getattr(self.local, action)(None)
            return int(local_done) + int(self._run("dead", [action]))
        local = [-i for i in ids if i < 0]
        remote = [i for i in ids if i > 0]
        done = int(getattr(self.local, action)(local)) if local else 0
        if remote:
            done += int(self._run("dead", [action, *remote]))
        return done

    def _sendable(self, local: list[Claimed], owner: str, now: float) -> list[Claimed]:
        """What may go out from the local outbox while Redis does not answer: all but SETs.

        Redis orders the fleet's SETs (the newest of a scope wins, ``latest_set``); a SET
        sent from here could not be known there, and another host's older SET, moved to
        Redis later, would then be sent after it and Stigg end at the older value. A SET
        waits for Redis (another environment's namespace aside: no SET of this
        environment is ordered there, so its SETs go out from here).
        """
        if self._foreign is not None:
            return local
        held = {c.id for c in local if set_scope(c.record) is not None}
        if held:
            self.local.settle(
                retry=sorted(held),
                owner=owner,
                now=now,
                retry_at=now + LOCAL_LOOK_S,
                reason="a SET waits for Redis, which orders the fleet's SETs",
            )
        return [c for c in local if c.id not in held]

    def _fell_back(self, error: StoreError) -> None:
        if isinstance(error, ForeignEnvironmentError):
            if self._foreign is None:
                logger.error(
                    "stigg_cache_redis.foreign_environment: %s",
                    str(error),
                    extra={"event": "stigg_cache_redis.foreign_environment"},
                )
            self._foreign = str(error)
            return
        if not self._down:
            self._down = True
            logger.warning(
                "stigg_cache_redis.unreachable: %s; usage waits in the local outbox %s",
                str(error),
                self.local.path,
                extra={"event": "stigg_cache_redis.unreachable"},
            )

    def _recovered(self) -> None:
        if self._down:
            self._down = False
            self._local_waiting = True
            self._spent_blind.clear()  # what it granted is in Redis's usage again
            logger.info(
                "stigg_cache_redis.recovered: Redis answers again",
                extra={"event": "stigg_cache_redis.recovered"},
            )

    def __repr__(self) -> str:
        return (
            f"RedisOutbox({redact_url(self.settings.url)!r}, namespace={self.settings.namespace!r})"
        )
