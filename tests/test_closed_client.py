"""A closed client refuses (DESIGN §11); a client dropped without close() warns and stops.

After ``close()`` every call raises :class:`ClientClosedError`: an answer from
a closed client could only be a guess (it used to answer ``has_access=True``
from DEFAULT with a false store-failure log). A client collected without
``close()`` emits a ``ResourceWarning`` and its threads and files are released.
"""

from __future__ import annotations

import asyncio
import gc
import threading
import warnings
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from stigg_cache import AsyncResilientClient, ClientClosedError, ResilientClient
from stigg_cache.testing.fake import FakeStigg
from tests.conftest import API_KEY, POLICY
from tests.helpers import eventually

USAGE = {"customer_id": "acme", "feature_id": "api_calls", "value": 1}
EVENT = {"customer_id": "acme", "event_name": "login", "idempotency_key": "e-1"}


def _client(fake: FakeStigg, tmp_path: Path, **options: Any) -> ResilientClient:
    options.setdefault("policy", POLICY)
    return ResilientClient(
        None,
        api_key=API_KEY,
        base_url=fake.url,
        store=f"sqlite:///{tmp_path}/cache.db",
        check_timeout=2.0,
        **options,
    )


def _calls(client: ResilientClient) -> dict[str, Callable[[], object]]:
    """Every call of the public surface, as a closed client is asked it."""
    return {
        "warm check": lambda: client.get_boolean_entitlement(customer_id="acme", feature_id="sso"),
        "cold check": lambda: client.get_metered_entitlement(
            customer_id="never-seen", feature_id="api_calls"
        ),
        "has_access": lambda: client.has_access("acme", "sso"),
        "get_entitlements": lambda: client.get_entitlements(customer_id="acme"),
        "report_event": lambda: client.report_event([EVENT]),
        "report_usage": lambda: client.report_usage(**USAGE),  # type: ignore[arg-type]
        "consume": lambda: client.consume("acme", "api_calls"),
        "flush": lambda: client.flush(timeout=1),
        "status": client.status,
        "reconcile": lambda: client.reconcile(timeout=1),
        "on_status_change": lambda: client.on_status_change(lambda old, new: None),
        "with": client.__enter__,
    }


def test_every_call_on_a_closed_client_raises_client_closed_error(
    fake: FakeStigg, tmp_path: Path
) -> None:
    client = _client(fake, tmp_path)
    assert client.get_boolean_entitlement(customer_id="acme", feature_id="sso").has_access
    client.close()
    refused = []
    for name, call in _calls(client).items():
        with pytest.raises(ClientClosedError, match="closed"):
            call()
        refused.append(name)
    assert refused == list(_calls(client))
    client.close()  # closing again is no call to refuse
    assert issubclass(ClientClosedError, RuntimeError)


def test_every_call_on_a_closed_async_client_raises_client_closed_error(
    fake: FakeStigg, tmp_path: Path
) -> None:
    async def main() -> list[str]:
        client = AsyncResilientClient(
            None,
            api_key=API_KEY,
            base_url=fake.url,
            store=f"sqlite:///{tmp_path}/cache.db",
            policy=POLICY,
            check_timeout=2.0,
        )
        await client.get_boolean_entitlement(customer_id="acme", feature_id="sso")
        await client.aclose()
        calls: dict[str, Callable[[], Awaitable[object]]] = {
            "warm check": lambda: client.get_boolean_entitlement(
                customer_id="acme", feature_id="sso"
            ),
            "cold check": lambda: client.get_entitlement(customer_id="new", feature_id="sso"),
            "report_usage": lambda: client.report_usage(**USAGE),  # type: ignore[arg-type]
            "report_event": lambda: client.report_event([EVENT]),
            "consume": lambda: client.consume("acme", "api_calls"),
            "flush": lambda: client.flush(timeout=1),
            "async with": client.__aenter__,
        }
        refused = []
        for name, call in calls.items():
            with pytest.raises(ClientClosedError):
                await call()
            refused.append(name)
        with pytest.raises(ClientClosedError):
            client.status()
        await client.aclose()  # again: nothing to refuse
        return refused

    assert len(asyncio.run(main())) == 7


def _threads_and_fds() -> tuple[int, int]:
    return threading.active_count(), len(list(Path("/proc/self/fd").iterdir()))


def _used(client: ResilientClient) -> None:
    """A client at work: a fetch, usage (the flusher's thread), the policy watcher."""
    client.get_boolean_entitlement(customer_id="acme", feature_id="sso")
    client.report_usage(customer_id="acme", feature_id="api_calls", value=1)
    client.flush(timeout=5)


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_clients_dropped_without_close_warn_and_leave_no_thread_or_file_behind(
    fake: FakeStigg, tmp_path: Path, kind: str
) -> None:
    policy = tmp_path / "fallback.yaml"
    policy.write_text("version: 1\n")
    gc.collect()
    before = _threads_and_fds()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for n in range(30):
            if kind == "sync":
                _used(_client(fake, tmp_path / str(n), policy=str(policy)))
            else:
                asyncio.run(_used_async(fake, tmp_path / str(n), str(policy)))
        gc.collect()
    dropped = [w for w in caught if issubclass(w.category, ResourceWarning)]
    assert len(dropped) == 30
    assert "unclosed" in str(dropped[0].message)
    eventually(lambda: _threads_and_fds() <= before, within_s=60)


async def _used_async(fake: FakeStigg, where: Path, policy: str) -> None:
    client = AsyncResilientClient(
        None,
        api_key=API_KEY,
        base_url=fake.url,
        store=f"sqlite:///{where}/cache.db",
        policy=policy,
        check_timeout=2.0,
    )
    await client.get_boolean_entitlement(customer_id="acme", feature_id="sso")
    await client.report_usage(customer_id="acme", feature_id="api_calls", value=1)
    await client.flush(timeout=5)
