"""One deadline for a whole HTTP answer, for the SDKs' httpx clients we hold copies of.

httpx's timeouts apply to each read, so a server trickling its body a byte at
a time never trips them. This transport reads the body before handing the
response on, and gives up when the request's read timeout has passed in
total — the same rule the built-in client follows.
"""

from __future__ import annotations

import time

import httpx

from stigg_cache.adapters.base import MAX_RESPONSE_BYTES


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
        started = time.monotonic()
        response = super().handle_request(request)
        chunks: list[bytes] = []
        size = 0
        try:
            for chunk in response.stream:  # type: ignore[union-attr]
                size += len(chunk)
                if size > MAX_RESPONSE_BYTES:
                    raise httpx.ReadError("answer larger than allowed", request=request)
                chunks.append(chunk)
                if budget is not None and time.monotonic() - started > budget:
                    raise httpx.ReadTimeout("answer arrived too slowly", request=request)
        finally:
            response.close()
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            content=b"".join(chunks),
            extensions=response.extensions,
            request=request,
        )
