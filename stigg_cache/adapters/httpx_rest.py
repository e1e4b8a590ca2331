"""The built-in REST client: ``ResilientClient(None, api_key=..., base_url=...)``.

It reads the body under one deadline for the whole call: httpx timeouts apply
per read, so a server trickling its body one byte at a time beats them.
"""

from __future__ import annotations

import time
from urllib.parse import quote

import httpx

from stigg_cache.adapters._http import failure_for_status, snapshot_from_body
from stigg_cache.adapters.base import MAX_RESPONSE_BYTES
from stigg_cache.errors import FailureKind, StiggUnavailableError
from stigg_cache.models import Snapshot

DEFAULT_BASE_URL = "https://api.stigg.io"
USER_AGENT = "stigg-cache/0.1"


class HttpxRestAdapter:
    """Stigg's REST API over an httpx client this adapter owns."""

    name = "httpx-rest"

    def __init__(self, *, api_key: str, base_url: str = DEFAULT_BASE_URL) -> None:
        self._http = httpx.Client(
            base_url=base_url,
            headers={"X-API-KEY": api_key, "User-Agent": USER_AGENT},
            follow_redirects=False,
            trust_env=False,
        )
        self.base_url = base_url

    def fetch_entitlements(
        self, customer_id: str, resource_id: str | None, *, timeout_s: float
    ) -> Snapshot:
        deadline = time.monotonic() + timeout_s
        params = {} if resource_id is None else {"resourceId": resource_id}
        path = f"/api/v1/customers/{quote(customer_id, safe='')}/entitlements"
        try:
            with self._http.stream(
                "GET", path, params=params, timeout=httpx.Timeout(timeout_s)
            ) as response:
                if response.status_code >= 400:
                    raise failure_for_status(response.status_code, response.headers)
                body = _read_within(response, deadline)
        except httpx.TimeoutException as error:
            raise StiggUnavailableError(
                FailureKind.TIMEOUT, f"Stigg timed out: {error!r}"
            ) from None
        except httpx.HTTPError as error:
            raise StiggUnavailableError(
                FailureKind.CONNECTION, f"Stigg unreachable: {error!r}"
            ) from None
        return snapshot_from_body(body, customer_id, resource_id)

    def close(self) -> None:
        self._http.close()

    def __repr__(self) -> str:
        return f"HttpxRestAdapter(base_url={self.base_url!r})"  # never the API key


def _read_within(response: httpx.Response, deadline: float) -> bytes:
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > MAX_RESPONSE_BYTES:
            raise StiggUnavailableError(
                FailureKind.INVALID_RESPONSE, f"Stigg's answer exceeds {MAX_RESPONSE_BYTES} bytes"
            )
        chunks.append(chunk)
        if time.monotonic() > deadline:
            raise StiggUnavailableError(FailureKind.TIMEOUT, "Stigg's answer arrived too slowly")
    return b"".join(chunks)
