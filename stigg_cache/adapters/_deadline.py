"""One deadline for a whole HTTP answer.

httpx's and requests' timeouts apply to each read, so a server trickling its
body a byte at a time never trips them. :func:`read_whole` is the one rule
(whole within the deadline, no larger than ``MAX_RESPONSE_BYTES``): the
built-in client reads with it, and so does this transport, which the copies
of the SDKs' httpx clients send through.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import httpx

from stigg_cache.adapters.base import CONNECT_TIMEOUT_S, MAX_RESPONSE_BYTES
from stigg_cache.errors import FailureKind, StiggUnavailableError


def call_timeout(timeout_s: float) -> httpx.Timeout:
    """A call's timeout for httpx: connecting takes at most ``CONNECT_TIMEOUT_S``."""
    return httpx.Timeout(timeout_s, connect=min(timeout_s, CONNECT_TIMEOUT_S))


def read_whole(chunks: Iterable[bytes], deadline: float | None) -> bytes:
    """An answer's chunks joined, if it is whole by ``deadline`` (monotonic) and not too large.

    Raises:
        StiggUnavailableError: TIMEOUT past the deadline, INVALID_RESPONSE beyond
            ``MAX_RESPONSE_BYTES``.
    """
    parts: list[bytes] = []
    size = 0
    for chunk in chunks:
        size += len(chunk)
        if size > MAX_RESPONSE_BYTES:
            raise StiggUnavailableError(
                FailureKind.INVALID_RESPONSE, f"Stigg's answer exceeds {MAX_RESPONSE_BYTES} bytes"
            )
        parts.append(chunk)
        if deadline is not None and time.monotonic() > deadline:
            raise StiggUnavailableError(FailureKind.TIMEOUT, "Stigg's answer arrived too slowly")
    return b"".join(parts)


def _budget(request: httpx.Request) -> float | None:
    timeout = request.extensions.get("timeout") or {}
    read = timeout.get("read")
    return None if read is None else float(read)


class DeadlineTransport(httpx.HTTPTransport):
    """An ``HTTPTransport`` without retries whose answers arrive whole within the read timeout."""

    def __init__(self) -> None:
        super().__init__(retries=0)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        budget = _budget(request)
        deadline = None if budget is None else time.monotonic() + budget
        response = super().handle_request(request)
        try:
            body = read_whole(response.stream, deadline)  # type: ignore[arg-type]
        except StiggUnavailableError as error:  # as httpx's own errors: the SDK reports those
            failure = httpx.ReadTimeout if error.kind is FailureKind.TIMEOUT else httpx.ReadError
            raise failure(str(error), request=request) from None
        finally:
            response.close()
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            content=body,
            extensions=response.extensions,
            request=request,
        )
