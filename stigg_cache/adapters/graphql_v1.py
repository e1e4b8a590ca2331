"""Adapter for the deprecated GraphQL SDK (``pip install stigg-api-client``).

``Stigg.create_client(...)`` returns a ``StiggClient`` holding an sgqlc
``RequestsEndpoint``. GraphQL calls go through a per-call copy of it (same
URL and headers, the caller's timeout, no tenacity retries); the Edge read is
the GET the SDK's ``_get_entitlements`` sends, sent once (the SDK retries
HTTP errors three times, and its second attempt raises ``KeyError``). Both
go over a requests session of ours that reads each answer whole within the
call's timeout (requests' own timeouts apply to each read, so a trickled
body would beat them), decoded within the size cap, and refuses redirects.

Entitlements come from Edge's ``entitlements-state.json`` when the client
has Edge on (the plans from its ``subscriptions.json``), else from a
``GetEntitlementsState`` query of ours sent through the SDK's endpoint (the
plans from the SDK's ``GetActiveSubscriptionsList``): the SDK's own document
names fragments it never defines, which a GraphQL server refuses, and its
``GetEntitlements`` carries no customer-level denial (an unknown customer would
read as one without the feature).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import quote

import attrs

from stigg_cache._support import fork
from stigg_cache.adapters import require
from stigg_cache.adapters._body import ACCEPT_ENCODING, read_whole
from stigg_cache.adapters._graphql import (
    EDGE_STATE,
    ENTITLEMENTS_STATE_QUERY,
    failure_for_errors,
    fetch_query,
    grant_input,
    snapshot_from_answer,
    snapshot_from_state,
)
from stigg_cache.adapters._http import (
    failure_for_status,
    is_answer,
    refuse_unsendable_headers,
)
from stigg_cache.adapters._plans import (
    EDGE_READS_PER_FETCH,
    EDGE_SUBSCRIPTIONS,
    graphql_input,
    plans_of_edge_body,
    plans_of_graphql,
    subscribed,
    time_left,
)
from stigg_cache.adapters._stigg_json import UsageCounts, usage_counts
from stigg_cache.adapters.base import (
    CONNECT_TIMEOUT_S,
    FailureTable,
    failure_of,
    timed_out,
    unsendable,
    unusable,
)
from stigg_cache.core.pacing import EDGE_READS_PER_MINUTE
from stigg_cache.errors import FailureKind, StiggUnavailableError
from stigg_cache.models import Snapshot

READ_CHUNK_BYTES = 16_384


class GraphQLV1Adapter:
    """``stigg.StiggClient`` of ``stigg-api-client`` behind the adapter interface."""

    name = "stigg-graphql-v1"

    def __init__(self, inner: Any) -> None:
        refuse_unsendable_headers(inner._endpoint.base_headers.items(), inner)
        self.inner = inner
        # With Edge on, a fetch is two Edge reads (the state and the subscriptions).
        edge = inner._enable_edge
        self.reads_per_minute = EDGE_READS_PER_MINUTE / EDGE_READS_PER_FETCH if edge else None
        self._requests = require("requests", "stigg-api-client", "graphql")
        exceptions = self._requests.exceptions
        self._failures: FailureTable = (
            (  # Edge answered 4xx/5xx
                exceptions.HTTPError,
                lambda e: failure_for_status(e.response.status_code, dict(e.response.headers)),
            ),
            # our request, not Stigg (requests quotes the header's value: never shown)
            ((exceptions.InvalidHeader, exceptions.InvalidURL), unsendable),
            (exceptions.Timeout, timed_out("Stigg timed out")),
            # a body that is not JSON (requests' error is both kinds)
            (ValueError, unusable("Stigg's answer is not JSON")),
            (exceptions.RequestException, lambda e: _unreachable(type(e).__name__)),
        )
        self._session = self._open_session()  # one pool for every per-call copy
        fork.renew_after_fork(self, GraphQLV1Adapter._reconnect)
        self._endpoint_type = type(inner._endpoint)
        self._operations = require(
            "stigg.generated.operations", "stigg-api-client", "graphql"
        ).Operations

    def _open_session(self) -> Any:
        session = self._requests.Session()
        deadline = _deadline_adapter(self._requests)
        session.mount("http://", deadline)
        session.mount("https://", deadline)
        return session

    def _reconnect(self) -> None:
        """A pool of this process's own: never a socket the parent may be reading."""
        fork.abandon(self._session)
        self._session = self._open_session()

    def fetch_entitlements(
        self, customer_id: str, resource_id: str | None, *, timeout_s: float
    ) -> Snapshot:
        deadline = time.monotonic() + timeout_s
        scope = (customer_id, resource_id)
        if self.inner._enable_edge:
            body = self._guarded(lambda: self._edge_get(EDGE_STATE, *scope, timeout_s))
            snapshot = snapshot_from_answer(body, customer_id, resource_id)
            if not subscribed(snapshot):
                return snapshot
            left = time_left(deadline)
            listed = self._guarded(lambda: self._edge_get(EDGE_SUBSCRIPTIONS, *scope, left))
            return attrs.evolve(snapshot, plan_ids=plans_of_edge_body(listed))
        variables = {"query": fetch_query(customer_id, resource_id)}
        data = self._request(ENTITLEMENTS_STATE_QUERY, variables, timeout_s)
        snapshot = snapshot_from_state(data.get("entitlementsState"), customer_id, resource_id)
        if not subscribed(snapshot):
            return snapshot
        query = self._operations.query.get_active_subscriptions_list
        wanted = {"input": graphql_input(customer_id, resource_id)}
        listed = self._request(query, wanted, time_left(deadline))
        return attrs.evolve(snapshot, plan_ids=plans_of_graphql(listed))

    def report_events(self, events: Sequence[Mapping[str, Any]], *, timeout_s: float) -> None:
        variables = {"input": {"usageEvents": list(events)}}
        self._request(self._operations.mutation.report_event, variables, timeout_s)

    def report_usage(self, usages: Sequence[Mapping[str, Any]], *, timeout_s: float) -> UsageCounts:
        variables = {"input": {"usages": list(usages)}}
        mutation = self._operations.mutation.report_usage_bulk
        data = self._request(mutation, variables, timeout_s)
        return usage_counts(data.get("reportUsageBulk") if isinstance(data, dict) else None)

    def grant_promotional_entitlements(
        self, customer_id: str, grants: Sequence[Mapping[str, Any]], *, timeout_s: float
    ) -> list[dict[str, Any]]:
        variables = {"input": grant_input(customer_id, grants)}
        mutation = self._operations.mutation.grant_promotional_entitlements
        data = self._request(mutation, variables, timeout_s)
        return list(data.get("grantPromotionalEntitlements") or [])

    def revoke_promotional_entitlement(
        self, customer_id: str, feature_id: str, *, timeout_s: float
    ) -> dict[str, Any]:
        variables = {"input": {"customerId": customer_id, "featureId": feature_id}}
        mutation = self._operations.mutation.revoke_promotional_entitlement
        data = self._request(mutation, variables, timeout_s)
        return dict(data.get("revokePromotionalEntitlement") or {})

    def close(self) -> None:
        """Close the copies' connections (the user's client is theirs)."""
        self._session.close()

    def _edge_get(
        self, name: str, customer_id: str, resource_id: str | None, timeout_s: float
    ) -> Any:
        """The SDK's Edge GET (``{edge}/v1/c/{customerId}/{name}``, the state or the
        subscriptions), once."""
        url = f"{self.inner._edge_url}/v1/c/{quote(customer_id, safe='')}/{name}"
        params = {} if resource_id is None else {"resourceId": resource_id}
        response = self._session.get(
            url,
            headers=self.inner._endpoint.base_headers,
            params=params,
            timeout=_timeouts(timeout_s),
        )
        response.raise_for_status()
        return response.json()

    def _copy(self, timeout_s: float) -> Any:
        """The user's client with this call's timeout (connect, read)."""
        endpoint = self.inner._endpoint
        copy = self._endpoint_type(
            endpoint.url, endpoint.base_headers, timeout=_timeouts(timeout_s), session=self._session
        )
        return type(self.inner)(copy, self.inner._enable_edge, self.inner._edge_url)

    def _request(self, operation: Any, variables: Mapping[str, Any], timeout_s: float) -> Any:
        """One GraphQL call through sgqlc, which folds HTTP errors into ``errors``."""
        client = self._copy(timeout_s)
        result = self._guarded(lambda: client._endpoint(operation, dict(variables)))
        errors = result.get("errors") if isinstance(result, dict) else None
        if errors:
            # sgqlc folds an HTTP error into the answer: its status and headers (Retry-After)
            # sit on the answer when the body had GraphQL errors, else on an error entry.
            for holder in (result, *(e for e in errors if isinstance(e, dict))):
                if holder.get("status"):
                    headers = dict(holder.get("headers") or {})
                    raise failure_for_status(int(holder["status"]), headers)
                if isinstance(holder.get("exception"), ValueError):  # a body that is not JSON
                    raise unusable("Stigg's answer is not JSON")(holder["exception"])
            raise failure_for_errors(errors)
        data = result.get("data") if isinstance(result, dict) else None
        if not isinstance(data, dict):
            raise StiggUnavailableError(FailureKind.INVALID_RESPONSE, "Stigg answered no data")
        return data

    def _guarded(self, call: Callable[[], Any]) -> Any:
        exceptions = self._requests.exceptions
        try:
            return call()
        except (exceptions.RequestException, ValueError) as error:
            failure = failure_of(error, self._failures)
            assert failure is not None  # a row for each exception caught
            raise failure from None

    def __repr__(self) -> str:
        return f"GraphQLV1Adapter(api_url={self.inner._endpoint.url!r})"


def _unreachable(name: str) -> StiggUnavailableError:
    return StiggUnavailableError(FailureKind.CONNECTION, f"Stigg unreachable: {name}")


def _timeouts(timeout_s: float) -> tuple[float, float]:
    """A call's (connect, read) timeouts for requests."""
    return min(timeout_s, CONNECT_TIMEOUT_S), timeout_s


def _deadline_adapter(requests: Any) -> Any:
    """A requests transport adapter that reads each answer whole within the read timeout,
    decoded within the size cap, and never passes on a redirect (requests would follow
    it, our API key along, and sgqlc would take its body for an answer).

    What it refuses it raises as our own failure, which requests and sgqlc let through.
    """

    class DeadlineAdapter(requests.adapters.HTTPAdapter):  # type: ignore[misc]
        def send(
            self,
            request: Any,
            stream: bool = False,  # noqa: ARG002 - the answer is always read whole here
            timeout: Any = None,
            **options: Any,
        ) -> Any:
            budget = timeout[1] if isinstance(timeout, tuple) else timeout
            deadline = None if budget is None else time.monotonic() + budget
            request.headers["Accept-Encoding"] = ACCEPT_ENCODING
            response = super().send(request, stream=True, timeout=timeout, **options)
            try:
                if not is_answer(response.status_code):
                    raise failure_for_status(response.status_code, dict(response.headers))
                encoding = response.headers.pop("Content-Encoding", None)
                body = read_whole(_chunks(response.raw), deadline, encoding)
            finally:
                response.close()
            response._content = body
            response._content_consumed = True
            return response

    return DeadlineAdapter()


def _chunks(raw: Any) -> Iterator[bytes]:
    """What has arrived, as it arrives (``read`` would wait for a full chunk of a trickle),
    as sent: :func:`read_whole` inflates it within the size cap."""
    if not hasattr(raw, "read1"):  # urllib3 before 2.0
        yield from raw.stream(READ_CHUNK_BYTES, decode_content=False)
        return
    while chunk := raw.read1(READ_CHUNK_BYTES, decode_content=False):
        yield chunk
