"""Tamper-evident snapshots: an HMAC-SHA256 over each value, as a store wrapper.

The threat: a local user who can write the cache (a SQLite file, a diskcache
folder, a shared Redis) edits their own entitlements to grant themselves paid
features, or copies another customer's snapshot under their key. With a
signing key, every value carries ``HMAC-SHA256(key, namespace | store key |
generation | value)``: an edited, truncated, unsigned or moved entry (to another
key, or to another namespace of a shared store: staging's into prod's) fails verification,
reads as a miss (the next tier answers), and is reported. The key lives in
the process (argument or ``STIGG_CACHE_SIGNING_KEY``), never beside the cache.

A signature cannot tell an old validly signed snapshot from a new one
(rollback). Two bounds: the snapshot's own fetch time is signed, so an old one
is judged by the staleness budget like any other; and each process keeps a
high-water mark of the newest generation it has written or read per key, so
it never goes back to an older one (beyond 5 s of clock skew between hosts).
What remains is a rollback within the staleness budget into a process that
has not yet seen the newer snapshot (a new process, for one).

Frame: ``b"SCSG" | key id (8) | generation (8, big-endian) | HMAC (32) | value``.
Several keys verify (rotation: the first signs, all verify, by key id).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
import threading
import time
from collections.abc import Iterator, Sequence

from stigg_cache._support import fork
from stigg_cache.errors import ConfigurationError, InvalidTypeError, TamperedEntryError
from stigg_cache.stores.base import (
    MISSING,
    Missing,
    Pruning,
    Store,
    count_keys,
    fence_of,
    generation_of,
    lease_of,
    put_fenced,
)

SIGNED_MAGIC = b"SCSG"
ENV_SIGNING_KEY = "STIGG_CACHE_SIGNING_KEY"  # comma-separated: the first signs, all verify
MIN_KEY_BYTES = 16
# Generations are wall-clock nanoseconds of the writing host: hosts sharing a
# store may disagree by this much before a fresh write looks like a rollback.
CLOCK_SKEW_NS = 5_000_000_000
_HEADER = struct.Struct(">4s8sQ32s")
_CONTEXT = b"stigg-cache snapshot v2\x00"  # v2: bound to the store's namespace


def signing_keys(given: str | bytes | Sequence[str | bytes] | None) -> list[bytes]:
    """The keys from the argument, else from ``STIGG_CACHE_SIGNING_KEY``; ``[]`` for none.

    Raises:
        ConfigurationError: a key is shorter than 16 bytes, or an empty list was given.
        TypeError: a key is neither ``str`` nor ``bytes``.
    """
    if given is None:
        given = [k for k in os.environ.get(ENV_SIGNING_KEY, "").split(",") if k.strip()]
    elif isinstance(given, str | bytes):
        given = [given]
    else:
        given = list(given)
        if not given:
            raise ConfigurationError(
                "signing_key=[] would turn signing off: give at least one key, or None "
                f"to use {ENV_SIGNING_KEY}"
            )
    if not all(isinstance(k, str | bytes) for k in given):
        raise InvalidTypeError("a signing key must be a str or bytes (e.g. secrets.token_hex(32))")
    keys = [k.strip().encode() if isinstance(k, str) else bytes(k) for k in given]
    if any(len(key) < MIN_KEY_BYTES for key in keys):
        raise ConfigurationError(
            f"a signing key must be at least {MIN_KEY_BYTES} bytes: generate one with "
            "python -c 'import secrets; print(secrets.token_hex(32))'"
        )
    return keys


def signed_value(stored: bytes) -> bytes | None:
    """The value inside a signed entry, unverified (for inspection); ``None`` if unsigned."""
    if len(stored) < _HEADER.size or stored[:4] != SIGNED_MAGIC:
        return None
    return stored[_HEADER.size :]


def _key_id(key: bytes) -> bytes:
    return hashlib.sha256(b"stigg-cache key id\x00" + key).digest()[:8]


class SignedStore:
    """Signs what it writes to ``inner`` and verifies what it reads."""

    def __init__(self, inner: Store, keys: Sequence[bytes]) -> None:
        """``keys[0]`` signs; every key verifies. Signatures are bound to the store's
        ``namespace`` when it has one (a Redis store's): use one key per environment too."""
        if not keys:
            raise ConfigurationError("SignedStore needs at least one signing key")
        self.inner = inner
        namespace = getattr(inner, "namespace", "")
        self._context = _CONTEXT + (namespace if isinstance(namespace, str) else "").encode()
        self._signer = keys[0]
        self._keys = {_key_id(key): key for key in keys}
        self._signer_id = _key_id(keys[0])
        self._high_water: dict[str, int] = {}
        self._lock = threading.Lock()
        fork.renew_after_fork(self, fork.fresh_lock)

    @property
    def key_count(self) -> int:
        """How many keys verify (for ``status()``; never the keys)."""
        return len(self._keys)

    def _mac(self, key: bytes, store_key: str, generation: int, value: bytes) -> bytes:
        message = b"".join(
            [self._context, b"\x00", store_key.encode(), b"\x00", generation.to_bytes(8, "big")]
        )
        message += value
        return hmac.new(key, message, hashlib.sha256).digest()

    def put(self, key: str, value: bytes) -> None:
        self.inner.put(key, self._signed(key, value))

    def _signed(self, key: str, value: bytes) -> bytes:
        with self._lock:  # generations only grow, even within one nanosecond
            generation = max(time.time_ns(), self._high_water.get(key, 0) + 1)
            self._high_water[key] = generation
        mac = self._mac(self._signer, key, generation, value)
        return _HEADER.pack(SIGNED_MAGIC, self._signer_id, generation, mac) + value

    def generation(self, key: str) -> int:
        """The inner store's fence generation of ``key`` (not a signature's)."""
        return generation_of(self.inner, key)

    def fence(self, key: str) -> None:
        fence_of(self.inner, key)

    def put_if_generation(self, key: str, value: bytes, generation: int) -> bool:
        return put_fenced(self.inner, key, self._signed(key, value), generation)

    def get(self, key: str) -> bytes | Missing:
        stored = self.inner.get(key)
        if stored is MISSING:
            return MISSING
        return self.verify(key, stored)

    def verify(self, key: str, stored: bytes) -> bytes:
        """The value inside a signed entry stored under ``key``.

        Raises:
            TamperedEntryError: unsigned, unknown key, altered, moved, or rolled back.
        """
        if len(stored) < _HEADER.size or stored[:4] != SIGNED_MAGIC:
            raise TamperedEntryError("snapshot entry is not signed")
        _, key_id, generation, mac = _HEADER.unpack_from(stored)
        signer = self._keys.get(key_id)
        if signer is None:
            raise TamperedEntryError("snapshot entry is signed by a key not configured here")
        value = stored[_HEADER.size :]
        if not hmac.compare_digest(mac, self._mac(signer, key, generation, value)):
            raise TamperedEntryError("snapshot entry failed its signature")
        with self._lock:
            newest = self._high_water.get(key, 0)
            if generation < newest - CLOCK_SKEW_NS:
                raise TamperedEntryError("snapshot entry is older than one already seen here")
            self._high_water[key] = max(newest, generation)
        return value

    def delete(self, key: str) -> None:
        self.inner.delete(key)

    def lease(self, key: str, owner: str, ttl_s: float) -> bool:
        """The inner store's lease (a store without leases: always taken)."""
        return lease_of(self.inner, key, owner, ttl_s)

    def keys(self, prefix: str = "") -> Iterator[str]:
        return self.inner.keys(prefix)

    def count(self, prefix: str) -> int:
        return count_keys(self.inner, prefix)

    def keep_for(self, prefix: str, seconds: float, max_bytes: int | None) -> None:
        if isinstance(self.inner, Pruning):
            self.inner.keep_for(prefix, seconds, max_bytes)

    def prune(self, limit: int) -> int:
        return self.inner.prune(limit) if isinstance(self.inner, Pruning) else 0

    def touch(self, keys: Sequence[str]) -> None:
        if isinstance(self.inner, Pruning):
            self.inner.touch(keys)

    def close(self) -> None:
        self.inner.close()

    def __repr__(self) -> str:
        return f"SignedStore({self.inner!r}, keys={len(self._keys)})"
