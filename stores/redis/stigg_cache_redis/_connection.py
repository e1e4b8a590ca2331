"""Redis URLs, connections with our own time budget, and a gate that fails fast.

redis-py retries on its own (three times with backoff in 8.x), which would
turn a 0.1 s timeout into most of a second; stigg-cache owns the time budget,
so retries are off and a connection fault closes the gate for a moment:
calls during that moment fail at once instead of each waiting out a timeout.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import attrs
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from stigg_cache.errors import ConfigurationError, StoreError
from stigg_cache.stores import fresh_lock, renew_after_fork
from stigg_cache.stores import redact_url as redact

DEFAULT_TIMEOUT_S = 0.1  # well under the default check budget (0.3 s)
DEFAULT_NAMESPACE = "default"
COOLDOWN_S = 1.0  # after a connection fault, calls fail at once this long,
MAX_COOLDOWN_S = 30.0  # doubling while faults repeat
OUTBOX_TIMEOUT_S = 2.0  # usage writes are off the check path; a 20,000-record bulk takes ~0.3 s
_OURS = {"namespace", "ttl", "timeout", "local_outbox"}
_T = TypeVar("_T")


@attrs.frozen
class RedisSettings:
    """What a ``redis://`` URL says, ours and redis-py's.

    Attributes:
        url: the URL redis-py opens (our own query parameters removed).
        namespace: keeps environments (prod, staging) apart in one Redis.
        ttl_s: snapshots expire after this long (``None``: kept until replaced).
        timeout_s: connect and read timeout of every call.
        local_outbox: where usage waits while Redis is unreachable.
    """

    url: str = attrs.field(repr=redact)  # holds the password: shown redacted
    namespace: str = DEFAULT_NAMESPACE
    ttl_s: int | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S
    local_outbox: Path | None = None

    @classmethod
    def from_url(cls, url: str) -> RedisSettings:
        """Parse ``redis://[:password@]host:port/db?namespace=&ttl=&timeout=&local_outbox=``.

        Raises:
            ConfigurationError: an option is malformed.
        """
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss") or not parts.hostname:
            raise ConfigurationError(
                f"store {redact(url)!r}: write redis://host:6379/0 (rediss:// for TLS); "
                "percent-encode / ? # @ : in a password (%2F %3F %23 %40 %3A)"
            )
        query = dict(parse_qsl(parts.query))
        rest = urlencode([(k, v) for k, v in parse_qsl(parts.query) if k not in _OURS])
        namespace = query.get("namespace", DEFAULT_NAMESPACE)
        if not namespace.replace("-", "").replace("_", "").isalnum():
            raise ConfigurationError(
                f"namespace {namespace!r}: use letters, digits, '-' and '_' (e.g. prod)"
            )
        return cls(
            url=urlunsplit(parts._replace(query=rest)),
            namespace=namespace,
            ttl_s=math.ceil(_seconds(query, "ttl", url)) if "ttl" in query else None,
            timeout_s=_seconds(query, "timeout", url) if "timeout" in query else DEFAULT_TIMEOUT_S,
            local_outbox=Path(query["local_outbox"]) if query.get("local_outbox") else None,
        )

    @property
    def deployment(self) -> str:
        """``host:port/db`` of the Redis this names (never its user or password)."""
        parts = urlsplit(self.url)
        database = parts.path.strip("/") or dict(parse_qsl(parts.query)).get("db", "0")
        return f"{parts.hostname}:{parts.port or 6379}/{database}"

    def connect(self, *, at_least_s: float = 0.0) -> redis.Redis:
        """A client with a connection pool, our timeouts and no retries of its own.

        ``at_least_s`` raises the read timeout (not the connect timeout) for
        work off the check path, such as the outbox's bulk writes.
        """
        pool = redis.ConnectionPool.from_url(
            self.url,
            socket_timeout=max(self.timeout_s, at_least_s),
            socket_connect_timeout=self.timeout_s,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=0,
        )
        return redis.Redis(connection_pool=pool)


def _seconds(query: dict[str, str], name: str, url: str) -> float:
    try:
        value = float(query[name])
    except ValueError:
        value = 0.0
    if not 0 < value < math.inf:
        raise ConfigurationError(
            f"store {redact(url)!r}: {name} must be a positive number of seconds, "
            f"got {query[name]!r}"
        )
    return value


class Gate:
    """Turns redis-py errors into :class:`StoreError`; after a connection fault,
    fails calls at once for ``cooldown_s`` (doubling while faults repeat, up to
    30 s) so a dead or hung Redis costs a check nothing."""

    def __init__(self, what: str, cooldown_s: float = COOLDOWN_S) -> None:
        self._what = what
        self._cooldown_s = cooldown_s
        self._faults = 0
        # Until when calls fail at once, and why: one tuple, so a call never reads the time
        # of one fault with the cause of none (a call begun before the fault that succeeds
        # clears ``error``; the gate stays closed, its message said "unavailable: None").
        self._closed: tuple[float, str] = (0.0, "")
        self._lock = threading.Lock()
        self.error: str | None = None
        renew_after_fork(self, fresh_lock)  # redis-py renews its own pools in a child

    def call(self, operation: Callable[[], _T]) -> _T:
        """Run ``operation`` unless the gate is closed.

        Raises:
            StoreError: Redis failed now, or recently enough that it is not asked.
        """
        closed_until, cause = self._closed
        if time.monotonic() < closed_until:
            raise StoreError(f"{self._what} unavailable: {cause}")
        try:
            result = operation()
        except (redis.ConnectionError, redis.TimeoutError) as error:
            cause = f"{type(error).__name__}: {error}"
            with self._lock:
                self._faults += 1
                cooldown = min(MAX_COOLDOWN_S, self._cooldown_s * 2 ** (self._faults - 1))
                self._closed = (time.monotonic() + cooldown, cause)
                self.error = cause
            raise StoreError(f"{self._what} unavailable: {cause}") from error
        except redis.RedisError as error:
            raise StoreError(f"{self._what}: {type(error).__name__}: {error}") from error
        self._faults = 0
        self.error = None
        return result
