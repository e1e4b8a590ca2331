"""Versioned snapshot codec: JSON inside a self-checking frame, never pickle.

Frame: ``MAGIC (4) | payload length (4, big-endian) | CRC-32 of payload (4) |
payload``. A store may hand back a value that was truncated (diskcache returns
a short value file as if whole) or damaged; the length and checksum turn both
into :class:`CorruptEntryError`, which readers treat as a miss. (A checksum
catches accidents, not tampering: that is the signing key's job.)

Payload: a JSON header line (ids, fetch time, plans, the feature ids in order,
and Stigg's customer-level data when there is any), then a table of where each
feature's entitlement ends (4 bytes, big-endian, per feature), then each
feature's entitlement as a JSON object of its own. A first check decodes the
header and one feature, never the others: that is what makes it cheaper than
decoding the whole response (the offsets are binary because integers are what
a JSON decoder is slowest at). A malformed feature surfaces as
:class:`InvalidResponseError` when it is first read.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import struct
import zlib
from collections.abc import Mapping
from datetime import UTC, datetime

import attrs

from stigg_cache.adapters._stigg_json import (
    FEATURE_END,
    LazyEntitlements,
    compact_json,
    feature_to_json,
    parse_entitlements,
    snapshot_to_json,
)
from stigg_cache.errors import CorruptEntryError, InvalidResponseError
from stigg_cache.models import Snapshot

MAGIC = b"SCS4"
CODEC_VERSION = 4
# Earlier versions, read as a miss (not a fault) and replaced by the next fetch:
# 2, one document; 3, the features' offsets in the JSON header.
OUTDATED_MAGIC = frozenset({b"SCS2", b"SCS3"})
_HEADER = struct.Struct(">4sII")
FRAME_BYTES = _HEADER.size
LATEST_EPOCH_S = 253_402_300_800  # 10000-01-01: later times do not fit a datetime
MAX_ENTRY_BYTES = 16 * 1024 * 1024  # far above any real customer's entitlements


@functools.lru_cache(maxsize=4_096)  # hashed on every L2 read: hot customers hit the cache
def snapshot_key(customer_id: str, resource_id: str | None) -> str:
    """The store key of a customer's (or resource's) snapshot.

    Ids are hashed so that no customer id ever names a file or needs escaping.
    """
    scope = f"{customer_id}\x00{resource_id or ''}".encode()
    return "snapshot:" + hashlib.sha256(scope).hexdigest()[:40]


SNAPSHOT_PREFIX = "snapshot:"


def encode_snapshot(snapshot: Snapshot) -> bytes:
    """Serialise a snapshot into a framed, versioned value."""
    header: dict[str, object] = {
        "customerId": snapshot.customer_id,
        "resourceId": snapshot.resource_id,
        "fetchedAt": snapshot.fetched_at,
        "planIds": list(snapshot.plan_ids),
    }
    if snapshot.credits or snapshot.access_denied_reason is not None:
        updated = datetime.fromtimestamp(snapshot.fetched_at, UTC)
        credits_only = attrs.evolve(snapshot, entitlements={})
        header["data"] = snapshot_to_json(credits_only, updated_at=updated)
    features = {fid: feature_to_json(e) for fid, e in snapshot.entitlements.items()}
    return pack(header, features)


def _json(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def pack(header: Mapping[str, object], features: Mapping[str, object]) -> bytes:
    """Frame a header and per-feature JSON objects (the layout the module docstring gives)."""
    blobs = [_json(item) for item in features.values()]
    ends = list(itertools.accumulate(map(len, blobs)))
    payload = b"".join(
        [
            _json({"v": CODEC_VERSION, **header, "features": list(features)}),
            b"\n",
            struct.pack(f">{len(ends)}I", *ends),
            *blobs,
        ]
    )
    return _HEADER.pack(MAGIC, len(payload), zlib.crc32(payload)) + payload


class OutdatedEntryError(CorruptEntryError):
    """An entry an earlier version wrote: a miss, not a fault (the next fetch replaces it)."""


def decode_snapshot(value: bytes) -> Snapshot:
    """Parse a value written by :func:`encode_snapshot`.

    Raises:
        OutdatedEntryError: written by an earlier version of the codec.
        CorruptEntryError: truncated, altered, oversized or unknown-version data.
    """
    if len(value) < _HEADER.size or len(value) > MAX_ENTRY_BYTES:
        raise CorruptEntryError(f"snapshot entry has an impossible size ({len(value)} bytes)")
    magic, length, checksum = _HEADER.unpack_from(value)
    payload = memoryview(value)[_HEADER.size :]  # no copy: checked, then decoded in place
    if magic != MAGIC:
        if magic in OUTDATED_MAGIC:
            raise OutdatedEntryError(f"snapshot entry of an earlier codec ({magic!r})")
        raise CorruptEntryError("snapshot entry has an unknown format marker")
    if length != len(payload):
        raise CorruptEntryError(f"snapshot entry is truncated ({len(payload)} of {length} bytes)")
    if zlib.crc32(payload) != checksum:
        raise CorruptEntryError("snapshot entry failed its checksum")
    split = value.find(b"\n", _HEADER.size) - _HEADER.size  # compact JSON has no raw newline
    if split < 0:
        raise CorruptEntryError("snapshot entry has no header line")
    try:
        header = compact_json(str(payload[:split], "utf-8"))
        return _parse_header(header, payload[split + 1 :])
    except CorruptEntryError:
        raise
    except (ValueError, KeyError, TypeError, RecursionError, InvalidResponseError) as error:
        raise CorruptEntryError(f"snapshot entry is unreadable: {error}") from None


def _strings(value: object) -> bool:
    """Whether ``value`` is a JSON list of strings (``str.join`` takes nothing else, and
    looks at each item in C)."""
    if type(value) is not list:
        return False
    try:
        "".join(value)
    except TypeError:
        return False
    return True


def _parse_header(document: object, rest: memoryview) -> Snapshot:
    if not isinstance(document, dict) or document.get("v") != CODEC_VERSION:
        raise CorruptEntryError("snapshot entry has an unsupported codec version")
    customer_id = document["customerId"]
    resource_id = document["resourceId"]
    fetched_at = document["fetchedAt"]
    if not isinstance(customer_id, str) or not (
        resource_id is None or isinstance(resource_id, str)
    ):
        raise CorruptEntryError("snapshot entry has malformed ids")
    if (
        isinstance(fetched_at, bool)
        or not isinstance(fetched_at, int | float)
        or not 0 <= fetched_at < LATEST_EPOCH_S  # NaN and Infinity fail too
    ):
        raise CorruptEntryError("snapshot entry has a malformed fetch time")
    plan_ids = document.get("planIds", [])
    if not _strings(plan_ids):
        raise CorruptEntryError("snapshot entry has malformed plan ids")
    ids = document["features"]
    if not _strings(ids) or len(rest) < (table := FEATURE_END.size * len(ids)):
        raise CorruptEntryError("snapshot entry has malformed features")
    last_end = FEATURE_END.unpack_from(rest, table - FEATURE_END.size)[0] if ids else 0
    if last_end != len(rest) - table:
        raise CorruptEntryError("snapshot entry's features do not fill it")
    features = LazyEntitlements(ids, rest[:table], rest[table:])
    data = document.get("data")
    if data is None:  # no credits, no customer-level denial: the common case, built directly
        return Snapshot(
            customer_id, resource_id, features, float(fetched_at), plan_ids=tuple(plan_ids)
        )
    return parse_entitlements(
        data,
        customer_id=customer_id,
        resource_id=resource_id,
        fetched_at=float(fetched_at),
        plan_ids=tuple(plan_ids),
        features=features,
    )
