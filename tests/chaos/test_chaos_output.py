"""What ``stigg-cache chaos run`` says: a summary line counting passed, failed and skipped
scenarios; "not judged" for an invariant a run could not judge; a memory invariant that
fails on a client that leaks; no word about a policy the scenario never touched. Through
click's runner and as the installed command."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from stigg_cache.chaos.leaks import RETAINED_BOUND_BYTES
from stigg_cache.chaos.scenario import ChaosRun, Scenario
from stigg_cache.cli import main
from stigg_cache.client import ResilientClient
from tests.helpers import run_installed

RESTART_ONCE = """
name: restart-once
about: The client is replaced once while Stigg answers.
duration: 3
workload: {threads: 2, checks_per_s: 100, reports_per_s: 10}
steps:
  - {at: 1, restart: true}
"""
QUIET = """
name: quiet
about: Nothing goes wrong.
duration: 4
workload: {threads: 4, checks_per_s: 400, reports_per_s: 0}
steps: []
"""
RETRY_AFTER = "usage sends wait out every Retry-After"


def _rows(output: str) -> dict[str, str]:
    """Each verdict's name, and what the scorecard shows for it (pass, FAIL, not judged)."""
    rows = {}
    for line in output.splitlines():
        if line.startswith("  ") and not line.startswith("   "):
            shown, _, rest = line.strip().partition("  ")
            rows[rest.strip().split("  ")[0]] = shown
    return rows


def test_an_invariant_a_run_cannot_judge_says_not_judged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    scenario = tmp_path / "restart-once.yaml"
    scenario.write_text(RESTART_ONCE)
    out = tmp_path / "report.json"
    result = CliRunner().invoke(main, ["chaos", "run", "--file", str(scenario), "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert _rows(result.output)[RETRY_AFTER] == "not judged"
    assert "not judged: several senders (restarts, kills)" in result.output
    assert result.output.endswith("\n1 passed\n")
    (verdict,) = [v for v in json.loads(out.read_text())[0]["verdicts"] if v["name"] == RETRY_AFTER]
    assert verdict["judged"] is False
    assert not [r for r in caplog.records if getattr(r, "event", "").endswith("policy_rejected")]


def test_the_installed_command_says_not_judged_and_sums_up(tmp_path: Path) -> None:
    scenario = tmp_path / "restart-once.yaml"
    scenario.write_text(RESTART_ONCE)
    result = run_installed("chaos", "run", "--file", str(scenario), cwd=tmp_path, timeout_s=120)
    assert result.returncode == 0, result.stderr
    assert _rows(result.stdout)[RETRY_AFTER] == "not judged"
    assert f"pass        {RETRY_AFTER}" not in result.stdout
    assert result.stdout.endswith("\n1 passed\n")
    assert "policy_rejected" not in result.stderr
    assert "fallback.yaml" not in result.stderr


def test_a_scenario_without_usage_does_not_judge_the_usage_invariants(tmp_path: Path) -> None:
    report = ChaosRun(Scenario.from_yaml(QUIET), tmp_path).run()
    shown = {v.name: v.shown for v in report.verdicts}
    assert shown["no acknowledged usage lost"] == "not judged"
    assert shown["no usage counted twice"] == "not judged"
    assert shown["no check raised"] == "pass"
    assert report.passed


_LEAKED: list[Any] = []  # where the deliberately leaking build keeps every answer


def test_the_memory_invariant_fails_on_a_client_that_keeps_its_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    healthy = ChaosRun(Scenario.from_yaml(QUIET), tmp_path / "healthy").run()
    (memory,) = [v for v in healthy.verdicts if v.name.startswith("threads, file descriptors")]
    assert memory.passed, memory.figures
    kept = float(memory.figures.split(" KiB kept")[0].rsplit(" ", 1)[1].replace(",", ""))
    assert kept * 1024 <= RETAINED_BOUND_BYTES

    answer = ResilientClient.get_boolean_entitlement

    def leaking(self: ResilientClient, **check: Any) -> Any:
        result = answer(self, **check)
        _LEAKED.append((result, bytes(1024)))  # outlives the client: a leak of ~1 KiB a check
        return result

    monkeypatch.setattr(ResilientClient, "get_boolean_entitlement", leaking)
    try:
        leaky = ChaosRun(Scenario.from_yaml(QUIET), tmp_path / "leaky").run()
    finally:
        _LEAKED.clear()
    (memory,) = [v for v in leaky.verdicts if v.name.startswith("threads, file descriptors")]
    assert not memory.passed, memory.figures
    # ~1 KiB kept a check: past the 64 KiB bound after 64 checks, however loaded the host
    assert leaky.checks > 100
    assert not leaky.passed
    assert "0 clients alive" in memory.figures  # the answers leak, not the client


def test_the_summary_counts_failed_and_skipped_scenarios(monkeypatch: pytest.MonkeyPatch) -> None:
    from stigg_cache.chaos import command
    from stigg_cache.chaos.history import Verdict
    from stigg_cache.chaos.scenario import Report

    held = Report("a", 1.0, (Verdict("x", passed=True, figures=""),), 1, 1)
    broke = Report("b", 1.0, (Verdict("x", passed=False, figures=""),), 1, 1)
    unmounted = Report("c", 0.0, (), 0, 0, skipped="needs a 8 MB tmpfs, which root mounts")
    summary = command._summary([held, broke, unmounted], [("d", "needs the [chaos] extra")])
    assert summary == (
        "1 passed, 1 failed (b), 2 skipped (d: needs the [chaos] extra; "
        "c: needs a 8 MB tmpfs, which root mounts)"
    )
    assert logging.getLogger("stigg_cache").level in (logging.NOTSET, logging.WARNING)
