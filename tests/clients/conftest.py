"""Which Stigg clients this environment can test, and how to build each one.

Three SDKs install the same top-level ``stigg`` module, so each family runs
in its own virtualenv (``make test`` builds them): ``STIGG_SDK_FAMILY`` says
which one this is (default ``rest``, the dev venv). Every client of the
family is tested; a family whose SDK is missing fails, it is never skipped.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import pytest

from stigg_cache import (
    AsyncResilientClient,
    FallbackPolicy,
    Grant,
    ResilientClient,
    Rule,
    Source,
    Staleness,
    StiggUnavailableError,
)
from stigg_cache.testing import ManualClock, runtime_of
from stigg_cache.testing.fake import FakeMode, FakeStigg, boolean, metered
from tests.conftest import API_KEY

FAMILIES: dict[str, tuple[str, ...]] = {
    "rest": ("rest", "rest-async", "httpx", "httpx-async"),
    "graphql-v1": ("graphql-v1-edge", "graphql-v1"),
    "graphql-v2": ("graphql-v2-edge", "graphql-v2", "graphql-v2-async-edge", "graphql-v2-async"),
    "sidecar": ("sidecar",),
}
CHECK_TIMEOUT_S = 0.3
WAIT_S = 15.0  # for background work on a loaded 2-core machine
POLICY = FallbackPolicy(
    staleness=Staleness(fresh_for_s=60, max_staleness_s=3600),
    rules=(Rule("newcomers", {"sso": Grant(has_access=True)}, customers=("new*",)),),
    version="v-clients",
)
AnyClient = ResilientClient | AsyncResilientClient


def family() -> str:
    name = os.environ.get("STIGG_SDK_FAMILY", "rest")
    if name not in FAMILIES:
        raise pytest.UsageError(f"STIGG_SDK_FAMILY={name!r}: expected one of {sorted(FAMILIES)}")
    return name


# Family-only tests: the sidecar's particulars; chaos runs through the GraphQL SDKs (the
# dev venv runs the built-in client's and the REST SDK's in tests/test_chaos.py).
collect_ignore = [
    *([] if family() == "sidecar" else ["test_sidecar.py", "test_every_fake.py"]),
    *([] if family().startswith("graphql") else ["test_chaos_graphql.py"]),
    *(["test_http_answers.py"] if family() == "sidecar" else []),
    # the REST SDK's documentation blocks run in tests/test_doc_examples.py
    *(["test_doc_examples.py"] if family() == "rest" else []),
]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "client_kind" in metafunc.fixturenames:
        metafunc.parametrize("client_kind", FAMILIES[family()])


@attrs.define
class World:
    """The fake Stigg (and fake sidecar, for the sidecar SDK) a client talks to, and the
    API key the clients are built with."""

    fake: FakeStigg
    sidecar: Any = None
    api_key: str = API_KEY
    options: dict[str, Any] = attrs.Factory(dict)  # the clients' options, over the defaults

    def set_mode(self, mode: FakeMode, *, retry_after_s: float = 1.0) -> None:
        self.fake.set_mode(mode, retry_after_s=retry_after_s)
        if self.sidecar is not None:
            self.sidecar.set_mode(mode)

    def refused_requests(self) -> int:
        """Requests answered with an error in ERROR_5XX mode (HTTP and gRPC)."""
        http = self.fake.counts["GET 5xx"] + self.fake.counts["POST 5xx"]
        return http + (0 if self.sidecar is None else len(self.sidecar.calls))


def adapter_of(client: AnyClient) -> Any:
    """The adapter a client sends through (a LoopBridge for asyncio SDKs)."""
    core = client._core if isinstance(client, AsyncResilientClient) else client
    return runtime_of(core).parts.adapter


@pytest.fixture
def world() -> Iterator[World]:
    """A fake Stigg with one customer: ``sso`` and ``api_calls`` (40 of 100 used)."""
    with FakeStigg(api_key=API_KEY) as fake:
        fake.set_customer("acme", [boolean("sso"), metered("api_calls", limit=100, usage=40)])
        yield World(fake)


Build = Callable[[World, ManualClock, Path], AbstractAsyncContextManager[AnyClient]]


def _options(world: World, clock: ManualClock, tmp_path: Path) -> dict[str, Any]:
    return {
        "store": f"sqlite:///{tmp_path}/cache.db",
        "outbox": f"sqlite:///{tmp_path}/outbox.db",
        "policy": POLICY,
        "check_timeout": CHECK_TIMEOUT_S,
        "fetch_timeout": 2.0,
        "clock": clock,
        **world.options,
    }


def _graphql(edge: bool, *, asynchronous: bool) -> Build:
    @asynccontextmanager
    async def build(world: World, clock: ManualClock, tmp_path: Path) -> AsyncIterator[AnyClient]:
        sdk: Any = importlib.import_module("stigg")  # v1 or v2: not the REST SDK mypy sees
        factory = sdk.Stigg.create_async_client if asynchronous else sdk.Stigg.create_client
        inner = factory(
            world.api_key,
            api_url=world.fake.graphql_url,
            enable_edge=edge,
            edge_api_url=world.fake.edge_url,
        )
        if asynchronous:
            async with AsyncResilientClient(inner, **_options(world, clock, tmp_path)) as client:
                yield client
        else:
            with ResilientClient(inner, **_options(world, clock, tmp_path)) as client:
                yield client

    return build


@asynccontextmanager
async def _rest(world: World, clock: ManualClock, tmp_path: Path) -> AsyncIterator[AnyClient]:
    import stigg

    with (
        stigg.Stigg(api_key=world.api_key, base_url=world.fake.url) as inner,
        ResilientClient(inner, **_options(world, clock, tmp_path)) as client,
    ):
        yield client


@asynccontextmanager
async def _rest_async(world: World, clock: ManualClock, tmp_path: Path) -> AsyncIterator[AnyClient]:
    import stigg

    async with (
        stigg.AsyncStigg(api_key=world.api_key, base_url=world.fake.url) as inner,
        AsyncResilientClient(inner, **_options(world, clock, tmp_path)) as client,
    ):
        yield client


@asynccontextmanager
async def _httpx(world: World, clock: ManualClock, tmp_path: Path) -> AsyncIterator[AnyClient]:
    options = _options(world, clock, tmp_path)
    with ResilientClient(None, api_key=world.api_key, base_url=world.fake.url, **options) as client:
        yield client


@asynccontextmanager
async def _httpx_async(
    world: World, clock: ManualClock, tmp_path: Path
) -> AsyncIterator[AnyClient]:
    options = _options(world, clock, tmp_path)
    async with AsyncResilientClient(
        None, api_key=world.api_key, base_url=world.fake.url, **options
    ) as client:
        yield client


@asynccontextmanager
async def _sidecar(world: World, clock: ManualClock, tmp_path: Path) -> AsyncIterator[AnyClient]:
    from stigg_sidecar_sdk import ApiConfig, Stigg

    from stigg_cache.testing.sidecar import FakeSidecar

    world.sidecar = FakeSidecar(world.fake.account)
    inner = Stigg(
        ApiConfig(api_key=world.api_key, api_url=world.fake.graphql_url, edge_enabled=False),
        remote_sidecar_host=world.sidecar.host,
        remote_sidecar_port=world.sidecar.port,
    )
    try:
        async with AsyncResilientClient(inner, **_options(world, clock, tmp_path)) as client:
            yield client
    finally:
        inner.close()
        await inner.api.http_client.aclose()
        world.sidecar.close()


BUILDERS: dict[str, Build] = {
    "rest": _rest,
    "rest-async": _rest_async,
    "httpx": _httpx,
    "httpx-async": _httpx_async,
    "graphql-v1-edge": _graphql(True, asynchronous=False),
    "graphql-v1": _graphql(False, asynchronous=False),
    "graphql-v2-edge": _graphql(True, asynchronous=False),
    "graphql-v2": _graphql(False, asynchronous=False),
    "graphql-v2-async-edge": _graphql(True, asynchronous=True),
    "graphql-v2-async": _graphql(False, asynchronous=True),
    "sidecar": _sidecar,
}


async def until(condition: Callable[[], Awaitable[bool]], what: str) -> None:
    """Poll an async condition until true; fail after ``WAIT_S``."""
    deadline = time.monotonic() + WAIT_S
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {WAIT_S}s")
        await asyncio.sleep(0.02)


async def warm(
    client: AnyClient, customer_id: str = "acme", resource_id: str | None = None
) -> None:
    """Until a snapshot is held: a first connection on a loaded machine may miss the budget."""

    async def held() -> bool:
        snapshot = await ask(
            client.get_entitlements(customer_id=customer_id, resource_id=resource_id)
        )
        return bool(snapshot.decision.source in (Source.LIVE, Source.CACHE))

    await until(held, f"a snapshot of {customer_id}")


async def outcomes_of_a_fetch_and_a_send(adapter: Any) -> list[object]:
    """What a fetch and an event send through ``adapter`` each raise, or return."""
    event = {"customerId": "acme", "eventName": "login", "idempotencyKey": "bound-to-fail"}

    def outcome(send: Callable[[], object]) -> object:
        try:
            return send()
        except Exception as error:
            return error

    return [
        await asyncio.to_thread(outcome, send)
        for send in (
            lambda: adapter.fetch_entitlements("acme", None, timeout_s=5),
            lambda: adapter.report_events([event], timeout_s=5),
        )
    ]


async def failures_of_a_fetch_and_a_send(adapter: Any) -> list[StiggUnavailableError]:
    """What a fetch and an event send through ``adapter`` each raise (both must raise ours)."""
    failures = []
    for outcome in await outcomes_of_a_fetch_and_a_send(adapter):
        assert isinstance(outcome, StiggUnavailableError), f"no failure but {outcome!r}"
        failures.append(outcome)
    return failures


async def ask(result: Any) -> Any:
    """A sync client's answer, or an async client's awaited."""
    if isinstance(result, Awaitable):
        return await result
    return result
