"""A client process of the fleet tests, driven line by line over stdin (JSON in, JSON out).

Run as ``python redis_worker.py STORE_URL STIGG_URL API_KEY LEASE_S [POLICY_FILE]``.
Commands: ``{"op": "check", "customer": C, "feature": F}``, ``{"op": "events",
"customer": C, "keys": [...]}``, ``{"op": "flush", "timeout": S}``, ``{"op": "status"}``,
``{"op": "exit"}``.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from stigg_cache import ResilientClient
from stigg_cache.testing import runtime_of


def _serve(client: ResilientClient, command: dict[str, Any]) -> dict[str, Any]:
    match command["op"]:
        case "check":
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
        case "events":
            receipts = client.report_event(
                [
                    {
                        "customer_id": command["customer"],
                        "event_name": "api.request",
                        "idempotency_key": key,
                    }
                    for key in command["keys"]
                ]
            )
            return {"durable": len(receipts)}
        case "flush":
            flushed = client.flush(timeout=command["timeout"])
            return {"drained": flushed.drained, "pending": flushed.pending}
        case "status":
            status = client.status()
            return {
                "outbox_depth": status.outbox_depth,
                "store_healthy": status.store_healthy,
                "sent": runtime_of(client).usage.flusher.sent,
            }
        case other:
            raise ValueError(f"unknown op {other!r}")


def main(store: str, stigg_url: str, api_key: str, lease_s: str, policy: str | None = None) -> None:
    client = ResilientClient(
        None,
        api_key=api_key,
        base_url=stigg_url,
        store=store,
        policy=policy,
        outbox_lease_s=float(lease_s),
        check_timeout=0.3,
    )
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        command = json.loads(line)
        if command["op"] == "exit":
            break
        print(json.dumps(_serve(client, command)), flush=True)
    client.close()


if __name__ == "__main__":
    main(*sys.argv[1:])
