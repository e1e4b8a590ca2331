"""AsyncResilientClient: the same answers, never blocking the event loop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import pytest
import stigg

from stigg_cache import AsyncResilientClient, ResilientClient, Source
from stigg_cache._support.memory_only import WouldBlock
from stigg_cache.adapters import adapt
from stigg_cache.adapters.bridge import LoopBridge
from stigg_cache.adapters.stigg_rest import AsyncStiggRestAdapter
from stigg_cache.core import walk
from stigg_cache.stores.base import Missing
from stigg_cache.stores.memory import MemoryStore
from stigg_cache.testing import ManualClock, runtime_of
from stigg_cache.testing.fake import FakeMode, FakeStigg
from tests.conftest import API_KEY, POLICY


def _options(tmp_path: Path) -> dict[str, Any]:
    return {"store": f"sqlite:///{tmp_path}/c.db", "policy": POLICY, "check_timeout": 0.3}


def _without_suspending(coroutine: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine that must finish at its first step; fail if it awaits anything."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    coroutine.close()
    raise AssertionError("the coroutine suspended: it awaited I/O")


def test_checks_the_memory_cache_answers_never_await(fake: FakeStigg, tmp_path: Path) -> None:
    async def story() -> None:
        async with AsyncResilientClient(
            None, api_key=API_KEY, base_url=fake.url, **_options(tmp_path)
        ) as client:
            live = await client.get_entitlements(customer_id="acme")
            assert live.decision is not None
            assert live.decision.source is Source.LIVE
            # A metered answer counts the host's usage: its first, which also prepares the
            # fast path's answer, may read the shared outbox on a thread (#28 item 2).
            await client.get_metered_entitlement(customer_id="acme", feature_id="api_calls")
            answers = [
                _without_suspending(
                    client.get_boolean_entitlement(customer_id="acme", feature_id="sso")
                ),
                _without_suspending(
                    client.get_metered_entitlement(customer_id="acme", feature_id="api_calls")
                ),
                _without_suspending(
                    client.get_enum_entitlement(
                        customer_id="acme", feature_id="models", requested_values=["claude"]
                    )
                ),
                _without_suspending(client.get_entitlement(customer_id="acme", feature_id="seats")),
                _without_suspending(client.get_entitlements(customer_id="acme")),
            ]
            assert {a.decision.source for a in answers} == {Source.CACHE}
            assert _without_suspending(client.has_access("acme", "sso")) is True
            with pytest.raises(ValueError, match="customer_id"):
                _without_suspending(client.get_boolean_entitlement(customer_id="", feature_id="x"))

    asyncio.run(story())


def test_a_check_waiting_on_stigg_leaves_the_loop_free(fake: FakeStigg, tmp_path: Path) -> None:
    fake.set_mode(FakeMode.BLACKHOLE)

    async def story() -> tuple[Source, int]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        async with AsyncResilientClient(
            None, api_key=API_KEY, base_url=fake.url, **_options(tmp_path)
        ) as client:
            beat = asyncio.create_task(ticker())
            cold = await client.get_boolean_entitlement(customer_id="acme", feature_id="sso")
            beat.cancel()
            fake.set_mode(FakeMode.UP)  # release the hung fetch before closing
            return cold.decision.source, ticks

    source, ticks = asyncio.run(story())
    assert source is Source.DEFAULT
    assert ticks >= 5  # the loop kept running for most of the 0.3 s budget


def test_async_sdk_calls_run_on_the_loop_the_client_was_built_in(
    fake: FakeStigg, tmp_path: Path
) -> None:
    async def story() -> None:
        loop = asyncio.get_running_loop()
        async with (
            stigg.AsyncStigg(api_key=API_KEY, base_url=fake.url) as inner,
            AsyncResilientClient(inner, **_options(tmp_path)) as client,
        ):
            bridge = runtime_of(client).parts.adapter
            assert isinstance(bridge, LoopBridge)
            assert bridge._loop is loop
            with pytest.raises(RuntimeError, match="AsyncResilientClient and await"):
                bridge.fetch_entitlements("acme", None, timeout_s=1)  # on the loop: would deadlock
            snapshot = await asyncio.to_thread(bridge.fetch_entitlements, "acme", None, timeout_s=5)
            assert "sso" in snapshot.entitlements

    asyncio.run(story())


def test_the_blocking_client_takes_an_async_sdk_on_a_private_loop(
    fake: FakeStigg, tmp_path: Path
) -> None:
    inner = stigg.AsyncStigg(api_key=API_KEY, base_url=fake.url)
    with ResilientClient(inner, **_options(tmp_path)) as client:
        answer = client.get_boolean_entitlement(customer_id="acme", feature_id="sso")
        assert (answer.decision.source, answer.has_access) == (Source.LIVE, True)
        threads = {t.name for t in threading.enumerate()}
        assert "stigg-cache-loop" in threads
    assert "stigg-cache-loop" not in {t.name for t in threading.enumerate()}


def test_an_async_adapter_of_the_users_own_is_bridged(fake: FakeStigg) -> None:
    mine = AsyncStiggRestAdapter(
        stigg.AsyncStigg(api_key=API_KEY, base_url=fake.url), fetch_timeout_s=5
    )
    adapter = adapt(mine, api_key=None, base_url=None, fetch_timeout_s=5)
    try:
        assert isinstance(adapter, LoopBridge)
        assert adapter.fetch_entitlements("acme", None, timeout_s=5).customer_id == "acme"
    finally:
        adapter.close()


def test_async_methods_read_like_the_blocking_ones() -> None:
    for name in ("get_metered_entitlement", "has_access", "report_usage", "flush"):
        blocking, awaited = getattr(ResilientClient, name), getattr(AsyncResilientClient, name)
        assert awaited.__doc__ == blocking.__doc__
        assert asyncio.iscoroutinefunction(awaited)


def test_every_public_method_of_the_blocking_client_has_its_async_form(tmp_path: Path) -> None:
    async def surfaces() -> tuple[set[str], set[str]]:
        async with AsyncResilientClient(None, api_key=API_KEY, **_options(tmp_path)) as client:
            with ResilientClient(None, api_key=API_KEY, **_options(tmp_path / "b")) as blocking:
                return _public(blocking), _public(client)

    blocking, awaited = asyncio.run(surfaces())
    assert blocking - {"close"} == awaited - {"aclose"}


def _public(client: object) -> set[str]:
    return {name for name in dir(client) if not name.startswith("_")}


def test_decision_hooks_hear_awaited_checks_once_each(fake: FakeStigg, tmp_path: Path) -> None:
    heard: list[tuple[str, Source]] = []

    async def story() -> None:
        async with AsyncResilientClient(
            None, api_key=API_KEY, base_url=fake.url, **_options(tmp_path)
        ) as client:
            client.on_decision(
                lambda kind, answer, _s: heard.append((kind, answer.decision.source))
            )
            await client.get_boolean_entitlement(customer_id="acme", feature_id="sso")  # a thread
            await client.get_boolean_entitlement(customer_id="acme", feature_id="sso")  # memory

    asyncio.run(story())
    assert heard == [("boolean", Source.LIVE), ("boolean", Source.CACHE)]


def test_an_awaited_check_blocks_a_worker_only_for_its_io_and_resumes_on_the_loop(
    fake: FakeStigg, tmp_path: Path
) -> None:
    """The walk goes on from the state that needed I/O: the store is read on a worker
    thread once, and the rest of the check (the answer, the hooks) runs on the loop."""
    reads: list[str] = []

    class WatchedStore(MemoryStore):
        def get(self, key: str) -> bytes | Missing:
            if key.startswith("snapshot:"):
                reads.append(threading.current_thread().name)
            return super().get(key)

    store = WatchedStore()
    with ResilientClient(None, api_key=API_KEY, base_url=fake.url, store=store) as warm:
        warm.get_boolean_entitlement(customer_id="acme", feature_id="sso")  # now in the store
    reads.clear()
    heard: list[tuple[str, Source]] = []

    async def story() -> str:
        async with AsyncResilientClient(
            None, api_key=API_KEY, base_url=fake.url, store=store, policy=POLICY
        ) as client:
            client.on_decision(
                lambda _k, answer, _s: heard.append(
                    (threading.current_thread().name, answer.decision.source)
                )
            )
            await client.get_boolean_entitlement(customer_id="acme", feature_id="sso")
            return threading.current_thread().name

    loop_thread = asyncio.run(story())
    assert len(reads) == 1
    assert reads[0].startswith("stigg-cache-async")
    assert heard == [(loop_thread, Source.CACHE)]


class _ThreadsOfStore(MemoryStore):
    """A memory store that notes the thread of every snapshot read, write and delete."""

    def __init__(self) -> None:
        super().__init__()
        self.threads: list[str] = []

    def _note(self, key: str) -> None:
        if key.startswith("snapshot:"):
            self.threads.append(threading.current_thread().name)

    def get(self, key: str) -> bytes | Missing:
        self._note(key)
        return super().get(key)

    def put(self, key: str, value: bytes) -> None:
        self._note(key)
        super().put(key, value)

    def delete(self, key: str) -> None:
        self._note(key)
        super().delete(key)


async def _every_io_state(
    client: AsyncResilientClient, fake: FakeStigg, clock: ManualClock
) -> list[Any]:
    """Checks through every state that waits on I/O: the store (ReadStore, ReadNewer),
    Stigg (Fetch) and the shared outbox (the policy's answer while Stigg is down, with
    usage a sibling reported that this process has not read yet)."""
    fallback = await client.get_metered_entitlement(customer_id="beta", feature_id="api_calls")
    fake.set_mode(FakeMode.UP)
    cold = await client.get_boolean_entitlement(customer_id="acme", feature_id="sso")
    clock.advance(120)  # past fresh_for: stale, after a look for a sibling's newer one
    stale = await client.get_boolean_entitlement(customer_id="acme", feature_id="sso")
    return [*(a.decision.source for a in (fallback, cold, stale)), fallback.current_usage]


def _sibling_reported(fake: FakeStigg, options: dict[str, Any]) -> None:
    """A sibling reports 3 units of beta's while Stigg is down: they stay in the outbox."""
    fake.set_mode(FakeMode.DOWN)
    with ResilientClient(None, api_key=API_KEY, base_url=fake.url, **options) as sibling:
        sibling.report_usage(customer_id="beta", feature_id="api_calls", value=3)


def test_no_step_that_waits_on_io_is_driven_on_the_event_loop(
    fake: FakeStigg, tmp_path: Path, clock: ManualClock
) -> None:
    store = _ThreadsOfStore()
    options: dict[str, Any] = {
        "store": store,
        "outbox": f"sqlite:///{tmp_path}/outbox.db",
        "policy": POLICY,
    }
    _sibling_reported(fake, options)

    async def story() -> tuple[str, list[Any]]:
        async with AsyncResilientClient(
            None, api_key=API_KEY, base_url=fake.url, clock=clock, **options
        ) as client:
            return threading.current_thread().name, await _every_io_state(client, fake, clock)

    loop_thread, answers = asyncio.run(story())
    assert answers == [Source.DEFAULT, Source.LIVE, Source.STALE, 3]  # the sibling's counted
    assert store.threads  # the store was read and written ...
    assert loop_thread not in store.threads  # ... never on the event loop


@pytest.mark.parametrize("state", [walk.ReadStore, walk.ReadNewer, walk.Fetch])
def test_a_state_typed_as_memory_that_waits_on_io_fails_the_check(
    fake: FakeStigg,
    tmp_path: Path,
    clock: ManualClock,
    monkeypatch: pytest.MonkeyPatch,
    state: type[walk.ReadStore | walk.ReadNewer | walk.Fetch],
) -> None:
    """The guard: were a state's ``io`` wrong, the loop would block; the check fails instead."""
    options: dict[str, Any] = {"store": f"sqlite:///{tmp_path}/c.db", "policy": POLICY}
    _sibling_reported(fake, options)
    monkeypatch.setattr(state, "io", walk.IO.MEMORY)

    async def story() -> None:
        async with AsyncResilientClient(
            None, api_key=API_KEY, base_url=fake.url, clock=clock, **options
        ) as client:
            await _every_io_state(client, fake, clock)

    with pytest.raises(WouldBlock):
        asyncio.run(story())
