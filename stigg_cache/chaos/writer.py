"""A client in a process of its own, for scenarios that SIGKILL it (``kill`` steps).

Run as ``python -m stigg_cache.chaos.writer STORE OUTBOX BASE_URL API_KEY RUN POLICY``: it
reports one event per call and checks one feature, about 50 of each a second,
printing a JSON line before each report (``invoke``, with the key and exact
payload), after it returns (``ok``), and after each check (``check``, with its
tier, age and time taken). A kill between ``invoke`` and ``ok`` leaves that
report's outcome unknown; its flusher may die holding leased records, which
another sender must deliver. It stops when its standard input closes.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from datetime import UTC, datetime

from stigg_cache.chaos.scenario import CHECK_TIMEOUT_S
from stigg_cache.client import ResilientClient
from stigg_cache.outbox.records import event_record

INTERVAL_S = 0.02


def main(argv: list[str]) -> None:
    """Write and check until stdin closes (or the process is killed)."""
    store, outbox, base_url, api_key, run, policy = argv
    stop = threading.Event()

    def until_stdin_closes() -> None:
        sys.stdin.read()
        stop.set()

    threading.Thread(target=until_stdin_closes, daemon=True).start()
    with ResilientClient(
        None,
        api_key=api_key,
        base_url=base_url,
        store=store,
        outbox=outbox,
        policy=policy,
        check_timeout=CHECK_TIMEOUT_S,  # as the scenario's own client
        outbox_lease_s=2.0,
    ) as client:
        print(json.dumps({"ready": True}), flush=True)
        count = 0
        while not stop.wait(INTERVAL_S):
            key = f"writer-{run}-{count}"
            count += 1
            customer = f"customer-{count % 7}"
            event = {
                "customer_id": customer,
                "event_name": "api.request",
                "idempotency_key": key,
                "timestamp": datetime.now(UTC),
            }
            payload = event_record(event, 0.0).payload
            print(json.dumps({"invoke": key, "payload": payload}), flush=True)
            client.report_event([event])
            print(json.dumps({"ok": key}), flush=True)
            started = time.perf_counter()
            result = client.get_boolean_entitlement(customer_id=customer, feature_id="sso")
            decision = result.decision
            check = {
                "source": decision.source.value,
                "age_s": decision.age_s,
                "stale": decision.stale,
                "policy_version": decision.policy_version,
                "elapsed_s": time.perf_counter() - started,
            }
            print(json.dumps({"check": check}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:7])
