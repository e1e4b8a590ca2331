"""A web service as users run it: the client is built at import, before the workers fork.

``gunicorn --preload`` imports this module in the parent, so the client (and
its warm customer) exists before the fork, as in production. Settings come
from the environment the test sets. Two apps over the same routes:

* ``wsgi``: a :class:`ResilientClient` (gunicorn's threaded sync workers);
* ``asgi``: an :class:`AsyncResilientClient` built at import, outside any
  loop (``gunicorn -k uvicorn_worker.UvicornWorker``, ``uvicorn --workers``).

Routes (query parameters, JSON answers with the worker's pid):
``/check?customer=&feature=``, ``/metered?customer=&units=``,
``/event?customer=&key=`` and ``/usage?customer=&units=`` (POST), ``/flush`` (POST).
Any route takes ``hold=SECONDS``: the worker answers, then stays busy that long
(blocking, on purpose), so concurrent requests reach every worker however the
kernel hands out connections.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

from stigg_cache import (
    AsyncResilientClient,
    FallbackPolicy,
    FeaturePolicy,
    Grant,
    ResilientClient,
    Staleness,
)

METERED_LIMIT = 100.0
POLICY = FallbackPolicy(
    staleness=Staleness(fresh_for_s=60, max_staleness_s=3600),
    features={
        "api_calls": FeaturePolicy(fallback=Grant(has_access=True, usage_limit=METERED_LIMIT))
    },
)
_OPTIONS: dict[str, Any] = {
    "api_key": os.environ.get("WEB_APP_API_KEY", ""),
    "base_url": os.environ.get("WEB_APP_STIGG_URL", ""),
    "store": os.environ.get("WEB_APP_STORE", "memory://"),
    "policy": POLICY,
    "check_timeout": 5.0,  # coordination, not the budget, is tested: room for a loaded machine
    "fetch_concurrency": 64,
}
WARM = "warm"
Answer = dict[str, Any]


def _route(client: ResilientClient, method: str, path: str, query: dict[str, str]) -> Answer:
    customer = query.get("customer", "")
    if path == "/check":
        answer = client.get_boolean_entitlement(customer_id=customer, feature_id=query["feature"])
        return {"has_access": answer.has_access, "source": answer.decision.source.value}
    if path == "/metered":
        metered = client.get_metered_entitlement(
            customer_id=customer, feature_id="api_calls", requested_usage=float(query["units"])
        )
        return {"has_access": metered.has_access, "current_usage": metered.current_usage}
    if method == "POST" and path == "/event":
        event = {
            "customer_id": customer,
            "event_name": "web.request",
            "idempotency_key": query["key"],
        }
        client.report_event([event])
        return {}
    if method == "POST" and path == "/usage":
        client.report_usage(
            customer_id=customer, feature_id="api_calls", value=float(query["units"])
        )
        return {}
    if method == "POST" and path == "/flush":
        return {"drained": client.flush(timeout=1).drained}
    raise LookupError(path)


def _query(text: str) -> dict[str, str]:
    return {name: values[0] for name, values in parse_qs(text).items()}


def _body(answer: Answer, query: dict[str, str]) -> bytes:
    time.sleep(float(query.get("hold", 0)))  # this worker takes no other request meanwhile
    return json.dumps({**answer, "pid": os.getpid()}).encode()


# -- WSGI ------------------------------------------------------------------------------------

if os.environ.get("WEB_APP_KIND") == "wsgi":
    sync_client = ResilientClient(None, **_OPTIONS)
    sync_client.get_boolean_entitlement(customer_id=WARM, feature_id=f"only-{WARM}")


def wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """The WSGI app (gunicorn's sync or threaded workers)."""
    query = _query(environ.get("QUERY_STRING", ""))
    answer = _route(sync_client, environ["REQUEST_METHOD"], environ["PATH_INFO"], query)
    body = _body(answer, query)
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]


# -- ASGI ------------------------------------------------------------------------------------

if os.environ.get("WEB_APP_KIND") == "asgi":
    async_client = AsyncResilientClient(None, **_OPTIONS)  # gunicorn: at import, outside any loop
    try:
        asyncio.get_running_loop()  # plain uvicorn imports the app in each worker's loop
    except RuntimeError:
        warming = async_client.get_boolean_entitlement(customer_id=WARM, feature_id=f"only-{WARM}")
        asyncio.run(warming)


async def _async_route(method: str, path: str, query: dict[str, str]) -> Answer:
    client = async_client
    customer = query.get("customer", "")
    if path == "/check":
        answer = await client.get_boolean_entitlement(
            customer_id=customer, feature_id=query["feature"]
        )
        return {"has_access": answer.has_access, "source": answer.decision.source.value}
    if path == "/metered":
        metered = await client.get_metered_entitlement(
            customer_id=customer, feature_id="api_calls", requested_usage=float(query["units"])
        )
        return {"has_access": metered.has_access, "current_usage": metered.current_usage}
    if method == "POST" and path == "/event":
        event = {
            "customer_id": customer,
            "event_name": "web.request",
            "idempotency_key": query["key"],
        }
        await client.report_event([event])
        return {}
    if method == "POST" and path == "/usage":
        await client.report_usage(
            customer_id=customer, feature_id="api_calls", value=float(query["units"])
        )
        return {}
    if method == "POST" and path == "/flush":
        return {"drained": (await client.flush(timeout=1)).drained}
    raise LookupError(path)


async def asgi(
    scope: dict[str, Any],
    receive: Callable[[], Awaitable[dict[str, Any]]],
    send: Callable[[dict[str, Any]], Awaitable[None]],
) -> None:
    """The ASGI app (uvicorn workers)."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    query = _query(scope.get("query_string", b"").decode())
    body = _body(await _async_route(scope["method"], scope["path"], query), query)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})
