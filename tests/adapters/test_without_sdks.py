"""The package imports and works with no Stigg SDK installed (the built-in client)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from stigg_cache.testing.fake import FakeStigg
from tests.conftest import API_KEY

# Runs in a fresh interpreter where importing any Stigg SDK (or its transports) fails.
_SCRIPT = textwrap.dedent(
    """
    import importlib.abc, sys

    BLOCKED = ("stigg", "stigg_sidecar_sdk", "sgqlc", "grpclib", "betterproto")

    class NoSdk(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"No module named {name!r} (blocked: no SDK installed)")
            return None

    sys.meta_path.insert(0, NoSdk())
    import stigg_cache
    from stigg_cache import ResilientClient, Source
    from stigg_cache.adapters import require

    with ResilientClient(None, api_key=sys.argv[2], base_url=sys.argv[1], store="memory://") as client:
        answer = client.get_boolean_entitlement(customer_id="acme", feature_id="sso")
        assert (answer.decision.source, answer.has_access) == (Source.LIVE, True), answer
        client.report_usage(customer_id="acme", feature_id="api_calls", value=1)
        assert client.flush(timeout=10).drained
    try:
        ResilientClient(object(), store="memory://")
    except TypeError as error:
        print("TYPE", error)
    try:
        require("stigg_sidecar_sdk", "stigg-sidecar-sdk", "sidecar")
    except ImportError as error:
        print("IMPORT", error)
    print("SDK MODULES", sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED))
    """
)


def test_the_built_in_client_works_with_no_sdk_importable(fake: FakeStigg) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT, fake.url, API_KEY],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = dict(line.split(" ", 1) for line in done.stdout.splitlines())
    assert "pip install 'stigg-cache[graphql-v2]'" in lines["TYPE"]
    assert "pip install 'stigg-cache[sidecar]'" in lines["IMPORT"]
    assert lines["SDK"] == "MODULES []"
    assert len(fake.account.usages) == 1
