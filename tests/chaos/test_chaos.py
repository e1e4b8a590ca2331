"""The chaos harness, a bounded subset: built-in scenarios parse, and two run and pass."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from stigg_cache.chaos import scenario as scenario_module
from stigg_cache.chaos.history import Outcome
from stigg_cache.chaos.scenario import ChaosRun, Scenario, builtin_scenarios
from stigg_cache.cli import main
from stigg_cache.errors import ConfigurationError
from stigg_cache.stores import open_store
from stigg_cache.testing.faulty import FaultyStore

EVERY_STEP = """
name: every-step
about: One of each step in six seconds.
duration: 6
workload: {threads: 2, checks_per_s: 100, reports_per_s: 20}
steps:
  - {at: 1, fault: {blackhole: true}}
  - {at: 1.5, edit_policy: invalid}
  - {at: 2, restart: true}
  - {at: 2.2, kill: true}
  - {at: 2.5, corrupt_store: true}
  - {at: 2.7, store_fault: [get, put]}
  - {at: 2.8, limits: {events_per_second: 50}}
  - {at: 4, clock: 600}
  - {at: 4.8, clock: 0}
  - {at: 3.2, store_fault: heal}
  - {at: 3.3, store_fault: {fail_at: 2}}
  - {at: 3, stigg: error_5xx}
  - {at: 3.5, flap: {refuse: true}, period: 0.5, for: 1}
  - {at: 4.5, edit_policy: valid}
  - {at: 5, clear: true}
"""


@pytest.mark.parametrize(
    ("fault", "message"),
    [("sometimes", "store_fault: write heal"), ({"slow": "x"}, "could not convert")],
)
def test_store_fault_steps_say_what_to_write(tmp_path: Path, fault: object, message: str) -> None:
    run = ChaosRun(Scenario.from_yaml("name: x\nduration: 0\nsteps: []\n"), tmp_path)
    run._store = FaultyStore(open_store("memory://"))
    with pytest.raises((ConfigurationError, ValueError), match=message):
        run._store_fault(fault)


def test_at_least_eight_builtin_scenarios_ship_and_parse() -> None:
    scenarios = builtin_scenarios()
    assert len(scenarios) >= 8
    assert all(s.duration_s <= 20 and s.about for s in scenarios.values())


def test_a_scenario_using_every_step_holds_every_invariant(tmp_path: Path) -> None:
    run = ChaosRun(Scenario.from_yaml(EVERY_STEP), tmp_path)
    report = run.run()
    failed = [v for v in report.verdicts if not v.passed]
    assert not failed, failed
    assert report.checks > 100
    assert report.reports > 20
    names = {v.name for v in report.verdicts}
    assert "no usage counted twice" in names
    assert "an invalid policy never replaced a valid one" in names
    assert any(op.detail.get("writer") for op in run.history.of("report"))  # a SIGKILLed process


def test_the_cli_runs_a_builtin_scenario_and_writes_a_report(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    result = CliRunner().invoke(main, ["chaos", "run", "cold-start-while-down", "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert result.output.endswith("\n1 passed\n")
    assert '"passed": true' in out.read_text()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: x\n", "needs name, duration and steps"),
        ("name: x\nduration: 1\nsteps: [{at: 1}]\n", r"steps\[0\] needs 'at' and one of"),
    ],
)
def test_scenario_mistakes_say_what_to_change(text: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Scenario.from_yaml(text)


def test_unknown_scenarios_are_named(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["chaos", "run", "no-such-thing"])
    assert result.exit_code == 2
    assert "unknown scenarios ['no-such-thing']" in result.output


def test_a_full_disk_refuses_usage_loudly_and_loses_nothing_acknowledged(tmp_path: Path) -> None:
    scenario = Scenario.from_yaml(
        "name: tiny-disk\nduration: 5\ndisk: 8\nsteps:\n"
        "  - {at: 1, fault: {refuse: true}}\n  - {at: 1.5, fill_disk: true}\n"
        "  - {at: 3, free_disk: true}\n  - {at: 4, clear: true}\n"
    )
    run = ChaosRun(scenario, tmp_path)
    report = run.run()
    if report.skipped:  # not root: no tmpfs (the report says so)
        assert "tmpfs" in report.skipped
        return
    assert report.passed, [v for v in report.verdicts if not v.passed]
    if report.checks:
        assert run.history.of("report", Outcome.FAILED), "the full disk refused nothing"


def test_a_client_whose_sdk_is_not_installed_names_the_extra() -> None:
    result = CliRunner().invoke(
        main, ["chaos", "run", "cold-start-while-down", "--client", "graphql"]
    )
    assert result.exit_code == 2
    assert "pip install 'stigg-cache[graphql-v2]'" in result.output


def _without_time_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    """As after ``pip install stigg-cache`` alone: the [chaos] extra is not there."""
    monkeypatch.setattr(scenario_module, "_installed", lambda module: module != "time_machine")


def test_without_the_chaos_extra_a_clock_scenario_asked_for_fails_before_anything_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _without_time_machine(monkeypatch)
    result = CliRunner().invoke(main, ["chaos", "run", "cold-start-while-down", "clock-jumps"])
    assert result.exit_code == 2
    assert result.output.strip() == (
        "cannot run clock-jumps: needs the [chaos] extra: it steps the wall clock "
        "(pip install 'stigg-cache[chaos]')"
    )


def test_without_the_chaos_extra_a_run_of_every_scenario_skips_the_clock_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _without_time_machine(monkeypatch)
    builtin = scenario_module.builtin_scenarios()
    two = {name: builtin[name] for name in ("clock-jumps", "cold-start-while-down")}
    monkeypatch.setattr(scenario_module, "builtin_scenarios", lambda: two)
    result = CliRunner().invoke(main, ["chaos", "run"])
    assert result.exit_code == 0, result.output
    assert "skipped clock-jumps: needs the [chaos] extra: it steps the wall clock" in result.output
    assert result.output.endswith("\n1 passed, 1 skipped (clock-jumps: needs the [chaos] extra)\n")


def test_workers_forked_from_one_client_hold_every_invariant_through_an_outage(
    tmp_path: Path,
) -> None:
    """#28: four workers of a client built before the fork, on threads and on an event
    loop, sharing the default store through an outage, flapping and recovery."""
    report = ChaosRun(builtin_scenarios()["workers-through-an-outage"], tmp_path).run()
    failed = [v for v in report.verdicts if not v.passed]
    assert not failed, failed
    names = {v.name for v in report.verdicts}
    for run in ("threads", "event loop"):
        assert f"{run}: every worker's breaker closed after Stigg returned" in names
        assert (
            f"{run}: usage reported through any worker is counted by every worker's checks" in names
        )
        assert f"{run}: no usage counted twice" in names
    assert report.checks > 1_000
    assert report.reports > 50
    assert list((tmp_path / "threads").rglob("*.db"))  # the default store, in the run's folder
