"""The chaos harness drives the installed GraphQL SDK, Edge off and on."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from stigg_cache.cli import main


@pytest.mark.parametrize("client", ["graphql", "graphql-edge"])
def test_a_long_outage_with_restarts_holds_every_invariant(client: str) -> None:
    result = CliRunner().invoke(
        main, ["chaos", "run", "long-outage-with-restarts", "--client", client]
    )
    assert result.exit_code == 0, result.output
    assert result.output.endswith("\n1 passed\n"), result.output
