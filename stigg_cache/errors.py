"""Exceptions raised by stigg-cache.

Checks never raise because of Stigg, the network, a store or the policy file:
those faults are reported as values (``Decision.reason``, ``status()``).
Exceptions are for the caller's own mistakes and for explicit admin calls::

    StiggCacheError
    ├── ClientClosedError (+ RuntimeError)  a call on a client after close()
    ├── InvalidArgumentError               a caller's mistake in an argument
    │   ├── InvalidValueError (+ ValueError)  a value out of range or malformed
    │   ├── InvalidTypeError (+ TypeError)    a value of the wrong type
    │   └── ConfigurationError (+ ValueError) bad constructor arguments, store URL
    │       └── StoreNotFoundError (+ FileNotFoundError)  nothing to open read-only there
    ├── PolicyError (+ ValueError)         an invalid fallback.yaml, every problem listed
    ├── StoreError (+ OSError)             a store could not read or write
    │   ├── CorruptEntryError (+ ValueError)  a stored value failed its checks
    │   │   └── TamperedEntryError             a snapshot failed its signature (or rolled back)
    │   └── OutboxFullError                    the outbox is at its limit: usage NOT recorded
    ├── StiggUnavailableError              Stigg could not answer (adapters)
    │   └── StiggRejectedError             Stigg answered 4xx: retrying will not help
    └── InvalidResponseError (+ ValueError) Stigg's answer could not be parsed

Each error also subclasses the built-in it resembles, so ``except ValueError``
keeps working for callers who do not know this module.
"""

from __future__ import annotations

import enum


class StiggCacheError(Exception):
    """Root of every exception this package raises."""


class ClientClosedError(StiggCacheError, RuntimeError):
    """A call on a client after its ``close()``: checks, usage, flushes and ``status()``
    all refuse (an answer from a closed client could only be a guess), as httpx does."""


class InvalidArgumentError(StiggCacheError):
    """The caller's own mistake in an argument; the message says what to change.

    ``except InvalidArgumentError`` catches every one of them; each also
    subclasses ``ValueError`` or ``TypeError``, as Python's own would.
    """


class InvalidValueError(InvalidArgumentError, ValueError):
    """An argument's value is out of range or malformed (an id, a number, a time)."""


class InvalidTypeError(InvalidArgumentError, TypeError):
    """An argument is of a type the call does not take."""


class ConfigurationError(InvalidArgumentError, ValueError):
    """An argument, URL or setting given by the caller is not usable."""


class StoreNotFoundError(ConfigurationError, FileNotFoundError):
    """A store or outbox opened read-only is not there: read-only opens never create one.

    The message names the path looked at and, for a relative URL, the absolute form.
    """


class StoreError(StiggCacheError, OSError):
    """A store failed to read or write; callers turn it into a miss."""


class CorruptEntryError(StoreError, ValueError):
    """A stored value is truncated, altered or of an unknown format."""


class TamperedEntryError(CorruptEntryError):
    """With a signing key set: a snapshot is unsigned, signed by an unknown key,
    altered, moved from another customer's key, or older than one already seen."""


class OutboxFullError(StoreError):
    """The outbox holds as many records as it may (``outbox_max_records``).

    Raised by the usage calls, never by checks: the usage was not recorded,
    and the caller must know that rather than lose it silently.
    """


class FailureKind(enum.Enum):
    """Why Stigg could not answer; drives the breaker and the retry plan."""

    CONNECTION = "connection"
    TIMEOUT = "timeout"
    RATE_LIMITED = "rate_limited"
    SERVER = "server"
    REJECTED = "rejected"
    AUTH = "auth"  # our credentials were refused: configuration, not Stigg's health
    INVALID_RESPONSE = "invalid_response"


class StiggUnavailableError(StiggCacheError):
    """Stigg could not be reached or did not answer usefully.

    Attributes:
        kind: the class of failure.
        status_code: the HTTP status, when there was a response.
        retry_after_s: Stigg's ``Retry-After`` hint in seconds, if any.
        not_asked: no request left this process (the breaker, the read budget or busy
            fetch slots held it back): asking again later may well work.
    """

    def __init__(
        self,
        kind: FailureKind,
        message: str,
        *,
        status_code: int | None = None,
        retry_after_s: float | None = None,
        not_asked: bool = False,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.status_code = status_code
        self.retry_after_s = retry_after_s
        self.not_asked = not_asked

    @property
    def trips_breaker(self) -> bool:
        """Whether this failure says Stigg itself is unhealthy (not our request or our key)."""
        return self.kind not in (FailureKind.REJECTED, FailureKind.AUTH)


class StiggRejectedError(StiggUnavailableError):
    """Stigg answered with a 4xx other than 429: the request itself is wrong
    (``REJECTED``), or our credentials are refused (``AUTH``: 401, 403)."""


class InvalidResponseError(StiggCacheError, ValueError):
    """A body that claims to come from Stigg does not have Stigg's shape."""


class PolicyError(StiggCacheError, ValueError):
    """A fallback policy file is invalid; every problem found is listed.

    Attributes:
        issues: each problem as ``(file, line, key, message)``.
    """

    def __init__(self, issues: list[tuple[str, int | None, str, str]]) -> None:
        self.issues = issues
        lines = [
            f"{file}:{line if line is not None else '?'}: {key}: {message}"
            if key
            else f"{file}:{line if line is not None else '?'}: {message}"
            for file, line, key, message in issues
        ]
        super().__init__("invalid fallback policy:\n  " + "\n  ".join(lines))
