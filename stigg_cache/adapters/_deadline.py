"""One deadline and one size cap for a whole HTTP answer, in the transports SDK copies use.

httpx's and requests' timeouts apply to each read, so a server trickling its
body a byte at a time never trips them; and they inflate a gzipped body with
no bound. :func:`~stigg_cache.adapters._body.read_whole` is the one rule
(whole within the deadline, decoded no larger than ``MAX_RESPONSE_BYTES``):
the built-in client reads with it, and so do these transports, which the
copies of the SDKs' httpx clients send through. They hand the SDK the body
decoded, so nothing inflates it again, and never hand it a redirect.

What they refuse they raise as :class:`~stigg_cache.errors.StiggUnavailableError`,
which the SDKs let through (the REST SDK as the cause of its ``APIConnectionError``).
``HTTPX_FAILURES`` says what httpx's own errors mean, for every client over httpx.
"""

from __future__ import annotations

import time

import httpx

from stigg_cache.adapters._body import ACCEPT_ENCODING, Body
from stigg_cache.adapters._http import failure_for_status, is_answer
from stigg_cache.adapters.base import (
    CONNECT_TIMEOUT_S,
    FailureTable,
    timed_out,
    unreachable,
    unsendable,
)

HTTPX_FAILURES: FailureTable = (
    # our request, not Stigg: h11 refuses a header (quoting its value: never shown)
    ((httpx.InvalidURL, httpx.LocalProtocolError, UnicodeError), unsendable),
    (httpx.TimeoutException, timed_out("Stigg timed out", with_error=True)),
    (httpx.HTTPError, unreachable("Stigg unreachable")),
)


def call_timeout(timeout_s: float) -> httpx.Timeout:
    """A call's timeout for httpx: connecting takes at most ``CONNECT_TIMEOUT_S``."""
    return httpx.Timeout(timeout_s, connect=min(timeout_s, CONNECT_TIMEOUT_S))


def _started(request: httpx.Request) -> float | None:
    """When the answer must be whole (monotonic), from the request's read timeout; and the
    request asks for the one coding we inflate in bounded steps."""
    request.headers["Accept-Encoding"] = ACCEPT_ENCODING
    timeout = request.extensions.get("timeout") or {}
    read = timeout.get("read")
    return None if read is None else time.monotonic() + float(read)


def _body(response: httpx.Response, deadline: float | None) -> Body:
    """Where the answer's bytes go; a redirect (or any 1xx, 3xx) is no answer at all."""
    if not is_answer(response.status_code):
        raise failure_for_status(response.status_code, response.headers)
    return Body(response.headers.get("Content-Encoding"), deadline)


def _decoded(response: httpx.Response, request: httpx.Request, body: bytes) -> httpx.Response:
    """``response`` with its decoded ``body``: no coding left for the client to undo."""
    headers = response.headers.copy()
    for name in ("Content-Encoding", "Content-Length"):
        headers.pop(name, None)
    return httpx.Response(
        response.status_code,
        headers=headers,
        content=body,
        extensions=response.extensions,
        request=request,
    )


class DeadlineTransport(httpx.HTTPTransport):
    """An ``HTTPTransport`` without retries whose answers arrive whole within the read
    timeout, decoded within the size cap."""

    def __init__(self) -> None:
        super().__init__(retries=0)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        deadline = _started(request)
        response = super().handle_request(request)
        try:
            body = _body(response, deadline)
            for chunk in response.stream:  # type: ignore[union-attr]
                body.add(chunk)
            return _decoded(response, request, body.whole())
        finally:
            response.close()


class AsyncDeadlineTransport(httpx.AsyncHTTPTransport):
    """:class:`DeadlineTransport` for the SDKs' asyncio clients."""

    def __init__(self) -> None:
        super().__init__(retries=0)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        deadline = _started(request)
        response = await super().handle_async_request(request)
        try:
            body = _body(response, deadline)
            async for chunk in response.stream:  # type: ignore[union-attr]
                body.add(chunk)
            return _decoded(response, request, body.whole())
        finally:
            await response.aclose()
