"""`make demo`: the story it prints is explicable and complete, and needs only `.[rest]`."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap

# The demo, with every package `make demo` does not install made unimportable.
_WITH_ONLY_THE_DEMO_EXTRA = textwrap.dedent(
    """
    import importlib.abc, runpy, sys

    NOT_INSTALLED = {"graphql", "pytest", "time_machine", "rich", "prometheus_client",
                     "redis", "stigg_cache_redis", "ldclient", "hypothesis", "mypy"}

    class NotInstalled(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in NOT_INSTALLED:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, NotInstalled())
    runpy.run_module("stigg_cache.demo", run_name="__main__")
    """
)


def test_the_demo_shows_its_policy_its_reconciliation_report_and_one_rejection() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _WITH_ONLY_THE_DEMO_EXTRA],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,  # log lines interleaved with the rows, as on a terminal
        text=True,
        timeout=110,
        check=False,
    )
    out = done.stdout
    assert done.returncode == 0, out
    lines = out.splitlines()
    # The policy it runs with, before the first row (a STALE answer 1.2 s old is explained).
    first_row = next(i for i, line in enumerate(lines) if line.startswith("1. Stigg up"))
    assert "   | staleness: {fresh_for: 1s, max_staleness: 60s}" in lines[:first_row]
    assert "client: ResilientClient(stigg.Stigg(...), check_timeout=0.3, " in out
    # A broken edit is rejected, and its message printed once.
    assert sum("not valid YAML" in line for line in lines) == 1
    assert sum("policy_rejected" in line for line in lines) == 1
    # The report the client made on reconnecting (on_reconcile), not an empty rerun.
    found = re.search(
        r"automatic reconciliation \(on_reconcile\): (\d+) offline decisions checked, "
        r"(\d+) contradicted by fresh data, (\d+) customers refreshed, outbox drained: True",
        out,
    )
    assert found is not None, out
    checked, contradicted, refreshed = map(int, found.groups())
    assert checked > 0
    assert contradicted > 0
    assert refreshed > 0
    # the incident rule's, said once: "granted offline, but Stigg would have denied it: …"
    assert (
        "     - newcorp/sso (2 decisions): granted offline, but Stigg would have denied it" in out
    )
    assert "Stigg received 10 events and 2 usage records, each once" in out
    assert re.search(r"4\. Stigg back \(Stigg's count\) +acme +api_calls .* usage 460 of 1000", out)
    assert lines[-1] == "   status: CONNECTED, outbox depth 0"
