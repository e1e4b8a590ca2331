"""A usage writer in a process of its own, for scenarios that SIGKILL it (``kill`` steps).

Run as ``python -m stigg_cache.chaos.writer STORE OUTBOX BASE_URL API_KEY RUN``: it
reports one event per call, about 50 a second, and prints a JSON line before
each call (``invoke``, with the key and exact payload) and after it returns
(``ok``). A kill between the two leaves that report's outcome unknown; its
flusher may die holding leased records, which another sender must deliver.
It stops when its standard input closes.
"""

from __future__ import annotations

import json
import sys
import threading
from datetime import UTC, datetime

from stigg_cache.client import ResilientClient
from stigg_cache.outbox.records import event_record

INTERVAL_S = 0.02


def main(store: str, outbox: str, base_url: str, api_key: str, run: str) -> None:
    """Write until stdin closes (or the process is killed)."""
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
        check_timeout=0.3,
        outbox_lease_s=2.0,
    ) as client:
        print(json.dumps({"ready": True}), flush=True)
        count = 0
        while not stop.wait(INTERVAL_S):
            key = f"writer-{run}-{count}"
            count += 1
            event = {
                "customer_id": f"customer-{count % 7}",
                "event_name": "api.request",
                "idempotency_key": key,
                "timestamp": datetime.now(UTC),
            }
            payload = event_record(event, 0.0).payload
            print(json.dumps({"invoke": key, "payload": payload}), flush=True)
            client.report_event([event])
            print(json.dumps({"ok": key}), flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:6])
