"""A host of a fleet on Redis: one ResilientClient in a process of its own, with its own
local outbox, driven line by line over stdin (JSON in, JSON out).

Run as ``python host.py CONFIG_JSON``; CONFIG: store, stigg_url, api_key, and optionally
lease_s, policy (YAML text), clock_ahead_s (the host's wall clock runs that far ahead),
async (checks and consumptions through an AsyncResilientClient) and breaker_backoff_s
(a breaker opening at the first failure, backing off exactly that long, always).
Commands: ``consume``, ``metered``, ``usage``, ``events``, ``flush``, ``status``, ``redis_ok``,
``cursor``, ``reports`` (its reconciliations), ``exit``. :class:`Host` starts one and asks it.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from piped import Piped
from redis_worker import _events, _flush

from stigg_cache import AsyncResilientClient, CircuitBreaker, FallbackPolicy, ResilientClient
from stigg_cache.core.reconcile import ReconcileReport
from stigg_cache.errors import StoreError
from stigg_cache.testing import runtime_of


class AheadClock:
    """The system clock, its wall time ``ahead_s`` ahead (a host whose clock is off)."""

    def __init__(self, ahead_s: float) -> None:
        self._ahead_s = ahead_s

    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time() + self._ahead_s


# A host configured with "async": its checks and consumptions go through an
# AsyncResilientClient on an event loop of its own (the other commands through its core).
_ASYNC: list[tuple[asyncio.AbstractEventLoop, AsyncResilientClient]] = []


def _consume(client: ResilientClient, command: dict[str, Any]) -> dict[str, Any]:
    customer, feature = command["customer"], command["feature"]
    granted = 0
    for _ in range(command.get("times", 1)):
        if _ASYNC:
            loop, aclient = _ASYNC[0]
            granted += loop.run_until_complete(aclient.consume(customer, feature)).granted
        else:
            granted += client.consume(customer, feature).granted
    return {"granted": granted}


def _metered(client: ResilientClient, command: dict[str, Any]) -> dict[str, Any]:
    customer, feature = command["customer"], command["feature"]
    if _ASYNC:
        loop, aclient = _ASYNC[0]
        check = aclient.get_metered_entitlement(customer_id=customer, feature_id=feature)
        answer = loop.run_until_complete(check)
    else:
        answer = client.get_metered_entitlement(customer_id=customer, feature_id=feature)
    return {"usage": answer.current_usage, "has_access": answer.has_access}


def _usage(client: ResilientClient, command: dict[str, Any]) -> dict[str, Any]:
    client.report_usage(
        customer_id=command["customer"],
        feature_id=command["feature"],
        value=command["value"],
        update_behavior=command.get("behavior", "DELTA"),
        idempotency_key=command.get("key"),
    )
    return {"durable": True}


def _status(client: ResilientClient, command: dict[str, Any]) -> dict[str, Any]:
    status = client.status()
    return {
        "outbox_depth": status.outbox_depth,
        "sent": runtime_of(client).parts.usage.flusher.sent,
        "state": status.state.value,
    }


def _redis_ok(client: ResilientClient, command: dict[str, Any]) -> dict[str, Any]:
    """Whether the shared outbox answers (its gate opens again a moment after a fault)."""
    try:
        runtime_of(client).parts.usage.outbox.cursor()  # type: ignore[attr-defined]
    except StoreError:
        return {"ok": False}
    return {"ok": True}


def _cursor(client: ResilientClient, command: dict[str, Any]) -> dict[str, Any]:
    runtime_of(client).parts.usage.sync()
    return {"cursor": runtime_of(client).parts.usage._cursor}


_REPORTS: list[ReconcileReport] = []  # every reconciliation this host ran, as it ended


def _reports(client: ResilientClient, command: dict[str, Any]) -> dict[str, Any]:
    return {
        "reports": [
            {
                "drained": report.outbox_drained,
                "refreshed": report.customers_refreshed,
                "failed": report.customers_failed,
                "checked": report.decisions_checked,
                "granted_but_denied": report.granted_but_denied,
            }
            for report in list(_REPORTS)
        ]
    }


_OPS = {
    "consume": _consume,
    "metered": _metered,
    "usage": _usage,
    "events": _events,
    "flush": _flush,
    "status": _status,
    "redis_ok": _redis_ok,
    "cursor": _cursor,
    "reports": _reports,
}


def main(config_json: str) -> None:
    config = json.loads(config_json)
    policy = FallbackPolicy.from_yaml(config["policy"]) if config.get("policy") else None
    options: dict[str, Any] = {
        "api_key": config["api_key"],
        "base_url": config["stigg_url"],
        "store": config["store"],
        "policy": policy,
        "outbox_lease_s": config.get("lease_s", 30.0),
        "check_timeout": 0.3,
        "clock": AheadClock(config.get("clock_ahead_s", 0.0)),
    }
    if config.get("breaker_backoff_s") is not None:
        backoff_s = config["breaker_backoff_s"]
        options["breaker"] = CircuitBreaker(
            failure_threshold=1,
            base_backoff_s=backoff_s,
            max_backoff_s=backoff_s,
            jitter=lambda: 1.0,  # the whole backoff
        )
    if config.get("async"):
        loop = asyncio.new_event_loop()

        async def build() -> AsyncResilientClient:  # built on its loop
            return AsyncResilientClient(None, **options)

        _ASYNC.append((loop, loop.run_until_complete(build())))
        client = _ASYNC[0][1]._core
    else:
        client = ResilientClient(None, **options)
    client.on_reconcile(_REPORTS.append)
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        command = json.loads(line)
        if command["op"] == "exit":
            break
        print(json.dumps(_OPS[command["op"]](client, command)), flush=True)
    if _ASYNC:
        loop, aclient = _ASYNC[0]
        loop.run_until_complete(aclient.aclose())
        loop.close()
    else:
        client.close()


class Host(Piped):
    """One host of the fleet: its client in a process of its own."""

    def __init__(self, store: str, stigg_url: str, api_key: str, **options: Any) -> None:
        config = {"store": store, "stigg_url": stigg_url, "api_key": api_key, **options}
        super().__init__([sys.executable, __file__, json.dumps(config)])

    def wait_for_redis(self, deadline_s: float = 30.0) -> None:
        """Until the host's outbox reaches Redis again (its gate reopens after a fault)."""
        deadline = time.monotonic() + deadline_s
        while not self.ask("redis_ok")["ok"]:
            assert time.monotonic() < deadline, "the host never reached Redis again"
            time.sleep(0.1)


def host_url(server: str, namespace: str, local: Path) -> str:
    """A host's store URL: the fleet's namespace, a local outbox of its own."""
    return f"{server}?namespace={namespace}&local_outbox={local}"


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    main(sys.argv[1])
