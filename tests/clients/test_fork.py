"""Every client built before ``os.fork`` answers for itself in the child (DESIGN §8).

The parent keeps checking while the child works, each over connections the
client pooled before the fork: a child that reused one would read the parent's
answers. Every customer has a feature only it has, so an answer meant for
another customer shows as a denial.
"""

from __future__ import annotations

import asyncio
import faulthandler
import tempfile
import threading
from pathlib import Path
from typing import Any

from stigg_cache import Source
from stigg_cache.testing import ManualClock
from stigg_cache.testing.fake import boolean
from tests.clients.conftest import BUILDERS, AnyClient, World, ask, warm
from tests.forking import child_result, fork_child

CUSTOMERS = [f"fork-{n}" for n in range(6)]
KNOWN = (Source.LIVE.value, Source.CACHE.value)


async def _own_features(client: AnyClient, customers: list[str]) -> list[list[Any]]:
    """Each customer's answer for its own feature, once a snapshot of it is held."""
    for customer in customers:
        await warm(client, customer)
    answers = await asyncio.gather(
        *(
            ask(client.get_boolean_entitlement(customer_id=c, feature_id=f"only-{c}"))
            for c in customers
        )
    )
    return [[a.customer_id, a.has_access, a.decision.source.value] for a in answers]


def _in_a_fresh_thread(client: AnyClient, kind: str) -> dict[str, Any]:
    """The child's work, on a thread with no event loop (the parent's is not running here)."""

    async def work() -> dict[str, Any]:
        answers = await _own_features(client, CUSTOMERS[:3])
        event = {"customer_id": "acme", "event_name": "e", "idempotency_key": f"child-{kind}"}
        await ask(client.report_event([event]))
        flushed = await ask(client.flush(timeout=10))
        return {"answers": answers, "drained": flushed.drained}

    done: list[Any] = []

    def run() -> None:
        try:
            done.append(asyncio.run(work()))
        except BaseException as error:  # the parent gets it, with its trace
            done.append(error)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(25)
    if not done:
        with tempfile.TemporaryFile("w+") as stacks:
            faulthandler.dump_traceback(stacks)
            stacks.seek(0)
            raise AssertionError(f"the child's work did not finish within 25 s:\n{stacks.read()}")
    if isinstance(done[0], BaseException):
        raise done[0]
    return done[0]  # type: ignore[no-any-return]


def test_every_client_built_before_a_fork_answers_for_itself_in_the_child(
    client_kind: str, world: World, tmp_path: Path
) -> None:
    asyncio.run(_parent_and_child(client_kind, world, tmp_path))


async def _parent_and_child(client_kind: str, world: World, tmp_path: Path) -> None:
    for customer in CUSTOMERS:
        world.fake.set_customer(customer, [boolean(f"only-{customer}")])
    async with BUILDERS[client_kind](world, ManualClock(), tmp_path) as client:
        await warm(client)  # the pool now holds a connection to Stigg (or the sidecar)
        pid = fork_child(lambda: _in_a_fresh_thread(client, client_kind))
        parent = await _own_features(client, CUSTOMERS[3:])
        child = await asyncio.to_thread(child_result, pid)
    assert child["drained"] is True
    assert all(has and source in KNOWN for _, has, source in child["answers"] + parent), (
        child["answers"],
        parent,
    )
    assert [a[0] for a in child["answers"]] == CUSTOMERS[:3]
