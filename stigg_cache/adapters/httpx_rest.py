"""The built-in REST client: ``ResilientClient(None, api_key=..., base_url=...)``.

Every call reads its body under one deadline for the whole call (httpx
timeouts apply per read, so a server trickling its body one byte at a time
beats them), as it came over the wire, inflated here within the size cap
(:mod:`stigg_cache.adapters._body`). Only a 2xx is an answer.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

import attrs
import httpx

from stigg_cache._support import fork
from stigg_cache.adapters._body import ACCEPT_ENCODING, read_whole
from stigg_cache.adapters._deadline import HTTPX_FAILURES
from stigg_cache.adapters._http import (
    acknowledged,
    camel_case,
    failure_for_status,
    json_data,
    refuse_unsendable_headers,
    snapshot_from_body,
)
from stigg_cache.adapters._plans import plans_of_rest_body, rest_query, subscribed, time_left
from stigg_cache.adapters._stigg_json import UsageCounts
from stigg_cache.adapters.base import failure_of
from stigg_cache.environment import environment_token
from stigg_cache.models import Snapshot

DEFAULT_BASE_URL = "https://api.stigg.io"
USER_AGENT = "stigg-cache/0.1"


def _customer(customer_id: str) -> str:
    return f"/api/v1/customers/{quote(customer_id, safe='')}"


class HttpxRestAdapter:
    """Stigg's REST API over an httpx client this adapter owns."""

    name = "httpx-rest"

    def __init__(self, *, api_key: str, base_url: str = DEFAULT_BASE_URL) -> None:
        """Raises:
        ConfigurationError: an API key no HTTP header can carry (a trailing newline...).
        """
        refuse_unsendable_headers([("X-API-KEY", api_key)])
        self._http = httpx.Client(
            base_url=base_url,
            headers={
                "X-API-KEY": api_key,
                "User-Agent": USER_AGENT,
                "Accept-Encoding": ACCEPT_ENCODING,
            },
            follow_redirects=False,
            trust_env=False,
        )
        self.base_url = base_url
        self.environment = environment_token(base_url, api_key)  # never the key itself
        fork.renew_after_fork(self, HttpxRestAdapter._reconnect)

    def _reconnect(self) -> None:
        """A pool of this process's own: never a socket the parent may be reading."""
        inherited = self._http
        fork.abandon(inherited)
        self._http = httpx.Client(
            base_url=inherited.base_url,
            headers=inherited.headers,
            follow_redirects=False,
            trust_env=False,
        )

    def fetch_entitlements(
        self, customer_id: str, resource_id: str | None, *, timeout_s: float
    ) -> Snapshot:
        deadline = time.monotonic() + timeout_s
        params = {} if resource_id is None else {"resourceId": resource_id}
        body = self._call("GET", f"{_customer(customer_id)}/entitlements", timeout_s, params=params)
        snapshot = snapshot_from_body(body, customer_id, resource_id)
        if not subscribed(snapshot):
            return snapshot
        subscriptions = self._call(
            "GET",
            "/api/v1/subscriptions",
            time_left(deadline),
            params=rest_query(customer_id, resource_id),
        )
        return attrs.evolve(snapshot, plan_ids=plans_of_rest_body(subscriptions))

    def report_events(self, events: Sequence[Mapping[str, Any]], *, timeout_s: float) -> None:
        acknowledged(self._call("POST", "/api/v1/events", timeout_s, json={"events": list(events)}))

    def report_usage(self, usages: Sequence[Mapping[str, Any]], *, timeout_s: float) -> UsageCounts:
        body = self._call("POST", "/api/v2/usage", timeout_s, json={"usages": list(usages)})
        return acknowledged(body)

    def grant_promotional_entitlements(
        self, customer_id: str, grants: Sequence[Mapping[str, Any]], *, timeout_s: float
    ) -> list[dict[str, Any]]:
        body = {"promotionalEntitlements": [camel_case(g) for g in grants]}
        path = f"{_customer(customer_id)}/promotional-entitlements"
        data = json_data(self._call("POST", path, timeout_s, json=body))
        return list(data) if isinstance(data, list) else []

    def revoke_promotional_entitlement(
        self, customer_id: str, feature_id: str, *, timeout_s: float
    ) -> dict[str, Any]:
        path = f"{_customer(customer_id)}/promotional-entitlements/{quote(feature_id, safe='')}"
        data = json_data(self._call("DELETE", path, timeout_s))
        return dict(data) if isinstance(data, dict) else {}

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, timeout_s: float, **options: Any) -> bytes:
        deadline = time.monotonic() + timeout_s
        try:
            with self._http.stream(
                method, path, timeout=httpx.Timeout(timeout_s), **options
            ) as response:
                if not response.is_success:
                    raise failure_for_status(response.status_code, response.headers)
                encoding = response.headers.get("Content-Encoding")
                return read_whole(response.iter_raw(), deadline, encoding)
        except (httpx.HTTPError, httpx.InvalidURL, UnicodeError) as error:
            failure = failure_of(error, HTTPX_FAILURES)
            assert failure is not None  # a row for each exception caught
            raise failure from None

    def __repr__(self) -> str:
        return f"HttpxRestAdapter(base_url={self.base_url!r})"  # never the API key
