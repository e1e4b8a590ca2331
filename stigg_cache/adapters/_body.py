"""An answer's body: whole within one deadline, and never more than ``MAX_RESPONSE_BYTES``
once decoded.

httpx, requests and urllib3 inflate a gzipped answer in one call per chunk
received, with no bound on what one call produces: 286 bytes of gzip in gzip
inflate to 64 MiB at once, before any size check after the call could look.
So every client path reads the bytes as they came over the wire and inflates
them here, a block at a time, counting what comes out: a bomb costs
``MAX_RESPONSE_BYTES`` plus one block, then is refused as no answer.

We ask for gzip alone (``ACCEPT_ENCODING``); an answer in another coding
(br, zstd, deflate...) is not one we asked for, and is refused likewise.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Iterable

from stigg_cache.adapters.base import MAX_RESPONSE_BYTES
from stigg_cache.errors import FailureKind, StiggUnavailableError

ACCEPT_ENCODING = "gzip"  # the one coding asked for: inflated a bounded block at a time
MAX_CODINGS = 2  # "gzip, gzip" (a proxy compressing what Stigg compressed); more is no answer
BLOCK_BYTES = 64 * 1024  # inflated per step: how far past the cap a bomb ever gets
_GZIP_WBITS = 16 + zlib.MAX_WBITS
_IDENTITY = frozenset({"", "identity"})


def _refused(why: str) -> StiggUnavailableError:
    return StiggUnavailableError(FailureKind.INVALID_RESPONSE, f"Stigg's answer {why}")


def _inflaters(content_encoding: str | None) -> list[zlib._Decompress]:
    """One gzip inflater per coding, outermost (the last applied) first."""
    codings = [c.strip().lower() for c in (content_encoding or "").split(",")]
    codings = [c for c in codings if c not in _IDENTITY]
    if len(codings) > MAX_CODINGS:
        raise _refused(f"is encoded {len(codings)} times over")
    if any(coding not in ("gzip", "x-gzip") for coding in codings):
        raise _refused(f"is in a content coding that was not asked for (only {ACCEPT_ENCODING})")
    return [zlib.decompressobj(_GZIP_WBITS) for _ in codings]


class Body:
    """The bytes of one answer as they arrive: decoded, counted, timed.

    Raises (from :meth:`add` and :meth:`whole`):
        StiggUnavailableError: INVALID_RESPONSE for an answer larger than
            ``MAX_RESPONSE_BYTES`` (on the wire or decoded), in a coding not
            asked for, or whose gzip is damaged or cut short; TIMEOUT once
            ``deadline`` (monotonic) has passed.
    """

    def __init__(self, content_encoding: str | None, deadline: float | None) -> None:
        self._inflaters = _inflaters(content_encoding)
        self._deadline = deadline
        self._parts: list[bytes] = []
        self._size = 0  # decoded
        self._received = 0  # as sent

    def add(self, chunk: bytes) -> None:
        """Take the next chunk as it came over the wire."""
        self._received += len(chunk)
        if self._received > MAX_RESPONSE_BYTES:
            raise _refused(f"exceeds {MAX_RESPONSE_BYTES} bytes")
        try:
            self._inflate(0, chunk)
        except zlib.error as error:
            raise _refused(f"is not valid gzip: {error}") from None
        if self._deadline is not None and time.monotonic() > self._deadline:
            raise StiggUnavailableError(FailureKind.TIMEOUT, "Stigg's answer arrived too slowly")

    def whole(self) -> bytes:
        """The decoded answer, once every chunk was added."""
        if self._received and not all(inflater.eof for inflater in self._inflaters):
            raise _refused("is cut short: its gzip stream does not end")
        return b"".join(self._parts)

    def _inflate(self, layer: int, data: bytes) -> None:
        """Pass ``data`` through the inflaters from ``layer`` on, a block at a time."""
        if layer == len(self._inflaters):
            self._keep(data)
            return
        inflater = self._inflaters[layer]
        while True:
            block = inflater.decompress(data, BLOCK_BYTES)
            data = inflater.unconsumed_tail
            if block:
                self._inflate(layer + 1, block)
            if not data and (len(block) < BLOCK_BYTES or inflater.eof):
                return  # all taken in, and nothing more waits inside the inflater

    def _keep(self, decoded: bytes) -> None:
        self._size += len(decoded)
        if self._size > MAX_RESPONSE_BYTES:
            raise _refused(f"exceeds {MAX_RESPONSE_BYTES} bytes once decoded")
        self._parts.append(decoded)


def read_whole(
    chunks: Iterable[bytes], deadline: float | None, content_encoding: str | None = None
) -> bytes:
    """An answer's chunks (as sent over the wire) decoded and joined, if whole by ``deadline``
    and within ``MAX_RESPONSE_BYTES``; raises as :class:`Body` does."""
    body = Body(content_encoding, deadline)
    for chunk in chunks:
        body.add(chunk)
    return body.whole()
