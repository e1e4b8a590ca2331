"""A key no HTTP header can carry is refused when the client is built, whichever SDK holds it
(#28): it would otherwise fail every request, quoting the key in every message."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from stigg_cache import ConfigurationError
from stigg_cache.testing import ManualClock
from tests.clients.conftest import BUILDERS, World
from tests.conftest import API_KEY


def test_a_key_ending_in_a_newline_is_refused_without_being_shown(
    client_kind: str, world: World, tmp_path: Path
) -> None:
    world.api_key = f"{API_KEY}\n"  # as read from a file or a Kubernetes secret

    async def build() -> None:
        async with BUILDERS[client_kind](world, ManualClock(), tmp_path):
            pass

    with pytest.raises(ConfigurationError, match="line feed") as refused:
        asyncio.run(build())
    assert API_KEY[8:] not in str(refused.value)
    assert "X-API-KEY" in str(refused.value)
    assert world.fake.log == []  # nothing was sent
