"""The fleet's rate budgets in Redis, and each process's share of them while Redis is away.

Stigg's limits hold for the account, so a fleet's senders take their tokens from
buckets in Redis (on Redis's clock). While Redis is unreachable each process paces
alone: at the whole account's rate, ``n`` processes would send ``n`` times Stigg's
limit and earn 429s. Each takes its share instead, the account's rate over the
processes Redis last saw taking from the buckets, and says so in ``status()``.
"""

from __future__ import annotations

from collections.abc import Callable

from stigg_cache.core.pacing import TokenBucket
from stigg_cache.errors import StoreError

# A process that took from a bucket this recently counts as one of the fleet's senders (an
# idle flusher takes every half second; a SIGKILLed one stops counting after this long).
PROCESS_SEEN_S = 30.0

BucketCall = Callable[..., float]  # (bucket name, operation, rate, capacity, count, least)


class RedisBucket:
    """A token bucket in Redis; this process's share of it while Redis is unreachable."""

    def __init__(
        self,
        call: BucketCall,
        processes_seen: Callable[[], int],
        name: str,
        rate: float,
        capacity: float,
    ) -> None:
        """``call`` runs ``bucket.lua`` (raising ``StoreError``); ``processes_seen``: the
        processes Redis last counted (0: never reached)."""
        self._bucket_call = call
        self._processes_seen = processes_seen
        self._name = name
        self._rate = rate
        self._capacity = capacity
        self._share = 1
        self._seen = 0
        self._local = TokenBucket(rate, capacity)
        self.alone = False  # the last operation could not reach Redis

    @property
    def rate(self) -> float:
        return self._rate / self._share if self.alone else self._rate

    @property
    def capacity(self) -> float:
        return self._local.capacity if self.alone else self._capacity

    @property
    def pacing(self) -> str | None:
        """Why and how this process paces alone (``None`` while the fleet's bucket answers)."""
        if not self.alone:
            return None
        if not self._seen:
            return (
                f"the fleet's {self._name} bucket in Redis is unreachable and Redis was never "
                "seen: this process paces alone at the account's whole rate"
            )
        return (
            f"the fleet's {self._name} bucket in Redis is unreachable: this process paces at "
            f"1/{self._share} of the account's rate ({self._seen} process(es) took from it "
            "when Redis was last seen)"
        )

    def _call(self, operation: str, count: float = 0, least: int = 0) -> float | None:
        rate, capacity = repr(self._rate), repr(self._capacity)
        try:
            answer = self._bucket_call(self._name, operation, rate, capacity, repr(count), least)
        except StoreError:
            self._alone()
            return None
        self.alone = False
        return answer

    def _alone(self) -> None:
        """This process's share of the bucket, re-cut when the fleet Redis last saw changed."""
        self._seen = self._processes_seen()
        share = max(1, self._seen)
        if share != self._share:
            self._share = share
            self._local = TokenBucket(self._rate / share, max(1.0, self._capacity / share))
        self.alone = True

    def available(self, now: float) -> float:
        shared = self._call("available")
        return self._local.available(now) if shared is None else shared

    def take(self, count: float, now: float) -> float:
        shared = self._call("take", count)
        return self._local.take(count, now) if shared is None else shared

    def acquire(self, most: int, least: int, now: float) -> int:
        shared = self._call("acquire", most, least)
        return self._local.acquire(most, least, now) if shared is None else int(shared)

    def refund(self, count: float, now: float) -> None:
        if self._call("refund", count) is None:
            self._local.refund(count, now)

    def pause(self, seconds: float, now: float) -> None:
        if self._call("pause", seconds) is None:
            self._local.pause(seconds, now)
