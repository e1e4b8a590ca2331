"""Child processes for the multi-process outbox tests (run with ``python -m``)."""

from __future__ import annotations

import sys

from stigg_cache import ResilientClient

LEASE_S = 1.0  # short, so a killed sender's batch is reclaimed quickly


def _client(store: str, base_url: str, api_key: str) -> ResilientClient:
    return ResilientClient(
        None,
        api_key=api_key,
        base_url=base_url,
        store=store,
        outbox_lease_s=LEASE_S,
        check_timeout=0.2,
    )


def write(store: str, base_url: str, api_key: str, run: str) -> None:
    """Report events one by one, printing each key once the call has returned."""
    client = _client(store, base_url, api_key)
    print("ready", flush=True)
    for n in range(100_000):
        key = f"{run}-{n}"
        client.report_event(
            [{"customer_id": f"c{n % 7}", "event_name": "api.request", "idempotency_key": key}]
        )
        print(key, flush=True)


def drain(store: str, base_url: str, api_key: str) -> None:
    """Flush the shared outbox and exit."""
    with _client(store, base_url, api_key) as client:
        result = client.flush(timeout=60)
        print(f"drained={result.drained} pending={result.pending}", flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "write":
        write(*sys.argv[2:6])
    else:
        drain(*sys.argv[2:5])
