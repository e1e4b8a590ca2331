"""A client process of the fleet tests, driven line by line over stdin (JSON in, JSON out).

Run as ``python redis_worker.py STORE_URL STIGG_URL API_KEY LEASE_S POLICY_FILE EVENTS_PER_S``
(the last two may be empty). Commands: ``{"op": "check", "customer": C, "feature": F}``,
``{"op": "metered", "customer": C, "feature": F}``, ``{"op": "consume", "customer": C,
"feature": F, "key": K}``, ``{"op": "usage", "customer": C, "feature": F, "keys": [...]}``,
``{"op": "events", "customer": C, "keys": [...]}``, ``{"op": "flush", "timeout": S}``,
``{"op": "status"}``, ``{"op": "exit"}``.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import Any

from stigg_cache import ResilientClient
from stigg_cache.core.pacing import EVENTS_PER_SECOND
from stigg_cache.testing import runtime_of


def _check(client: ResilientClient, command: dict[str, Any]) -> dict[str, Any]:
    started = time.perf_counter()
    result = client.get_boolean_entitlement(
        customer_id=command["customer"], feature_id=command["feature"]
    )
    return {
        "has_access": result.has_access,
        "source": result.decision.source.value,
        "stale": result.decision.stale,
        "elapsed_s": time.perf_counter() - started,
    }


def _metered(client: ResilientClient, command: dict[str, Any]) -> dict[str, Any]:
    metered = client.get_metered_entitlement(
        customer_id=command["customer"], feature_id=command["feature"]
    )
    return {
        "current_usage": metered.current_usage,
        "usage_limit": metered.usage_limit,
        "source": metered.decision.source.value,
    }


def _consume(client: ResilientClient, command: dict[str, Any]) -> dict[str, Any]:
    consumed = client.consume(
        command["customer"], command["feature"], idempotency_key=command["key"]
    )
    return {"granted": consumed.granted}


def _usage(client: ResilientClient, command: dict[str, Any]) -> dict[str, Any]:
    usages = [
        {
            "customer_id": command["customer"],
            "feature_id": command["feature"],
            "value": 1,
            "idempotency_key": key,
        }
        for key in command["keys"]
    ]
    return {"durable": len(client.report_usage_bulk(usages))}


def _events(client: ResilientClient, command: dict[str, Any]) -> dict[str, Any]:
    events = [
        {"customer_id": command["customer"], "event_name": "api.request", "idempotency_key": key}
        for key in command["keys"]
    ]
    return {"durable": len(client.report_event(events))}


def _flush(client: ResilientClient, command: dict[str, Any]) -> dict[str, Any]:
    flushed = client.flush(timeout=command["timeout"])
    return {"drained": flushed.drained, "pending": flushed.pending}


def _status(client: ResilientClient, command: dict[str, Any]) -> dict[str, Any]:
    del command
    status = client.status()
    return {
        "outbox_depth": status.outbox_depth,
        "outbox_error": status.outbox_error,
        "store_healthy": status.store_healthy,
        "pacing": getattr(status, "pacing", None),
        "sent": runtime_of(client).parts.usage.flusher.sent,
    }


_OPS: dict[str, Callable[[ResilientClient, dict[str, Any]], dict[str, Any]]] = {
    "check": _check,
    "metered": _metered,
    "consume": _consume,
    "usage": _usage,
    "events": _events,
    "flush": _flush,
    "status": _status,
}


def main(
    store: str,
    stigg_url: str,
    api_key: str,
    lease_s: str,
    policy: str = "",
    events_per_second: str = "",
) -> None:
    client = ResilientClient(
        None,
        api_key=api_key,
        base_url=stigg_url,
        store=store,
        policy=policy or None,
        outbox_lease_s=float(lease_s),
        check_timeout=0.3,
        events_per_second=float(events_per_second) if events_per_second else EVENTS_PER_SECOND,
    )
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        command = json.loads(line)
        if command["op"] == "exit":
            break
        print(json.dumps(_OPS[command["op"]](client, command)), flush=True)
    client.close()


if __name__ == "__main__":
    main(*sys.argv[1:])
