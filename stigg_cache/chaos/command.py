"""``stigg-cache chaos``: run the scenarios, show what held (the scenarios themselves are
imported when a command runs: ``stigg-cache --version`` stays quick)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click


@click.group()
def chaos() -> None:
    """Prove a setup survives outages: scenarios against a fake Stigg on loopback."""


@chaos.command("list")
def chaos_list() -> None:
    """The built-in scenarios."""
    from stigg_cache.chaos.scenario import builtin_scenarios  # noqa: PLC0415 - only here

    for name, scenario in builtin_scenarios().items():
        click.echo(f"{name:<28} {scenario.duration_s:>4.0f}s  {scenario.about}")


@chaos.command("run")
@click.argument("scenarios", nargs=-1)
@click.option(
    "--file",
    "files",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False),
    help="A scenario YAML of your own (repeat).",
)
@click.option("--store", default=None, help="Store URL to test (default: a fresh SQLite file).")
@click.option(
    "--policy",
    "policy_path",
    type=click.Path(exists=True, dir_okay=False),
    help="Your fallback.yaml.",
)
@click.option(
    "--client",
    "client_kind",
    type=click.Choice(["httpx", "rest", "graphql", "graphql-edge"]),
    default="httpx",
    show_default=True,
    help="The Stigg client to wrap: the built-in one, the REST SDK, or the installed "
    "GraphQL SDK (v1 or v2) with Edge off or on.",
)
@click.option("--json", "json_out", type=click.Path(dir_okay=False), help="Write the report here.")
def chaos_run(  # noqa: PLR0917 - click passes options positionally
    scenarios: tuple[str, ...],
    files: tuple[str, ...],
    store: str | None,
    policy_path: str | None,
    client_kind: str,
    json_out: str | None,
) -> None:
    """Run scenarios (all built-in ones if none is named); exit 1 if any invariant fails."""
    import json  # noqa: PLC0415
    import tempfile  # noqa: PLC0415

    from stigg_cache.chaos.scenario import ChaosRun  # noqa: PLC0415

    chosen, skipped = _chosen(scenarios, files)
    policy = Path(policy_path).read_text() if policy_path else None
    reports = []
    for scenario in chosen:
        click.echo(
            f"running {scenario.name} ({scenario.duration_s:.0f}s): {scenario.about}", err=True
        )
        with tempfile.TemporaryDirectory(prefix="stigg-cache-chaos-") as workdir:
            run = ChaosRun(
                scenario, Path(workdir), store=store, policy=policy, inner=_inner(client_kind)
            )
            report = _with_progress(run)
        reports.append(report)
        click.echo(f"  {_outcome(report)}", err=True)
    click.echo(_scorecard(reports))
    click.echo(_summary(reports, skipped))
    if json_out:
        Path(json_out).write_text(json.dumps([_report_json(r) for r in reports], indent=2))
    sys.exit(0 if all(r.passed or r.skipped for r in reports) else 1)


def _chosen(names: tuple[str, ...], files: tuple[str, ...]) -> tuple[list[Any], list[Any]]:
    """The scenarios to run, and those skipped (name, why): all built-in ones unless some
    are named; one named that cannot run here exits 2 before anything runs."""
    from stigg_cache.chaos.scenario import Scenario, builtin_scenarios  # noqa: PLC0415

    known = builtin_scenarios()
    unknown = [name for name in names if name not in known]
    if unknown:
        click.echo(f"unknown scenarios {unknown}; see: stigg-cache chaos list", err=True)
        sys.exit(2)
    named = [known[n] for n in names] + [Scenario.from_yaml(Path(f).read_text(), f) for f in files]
    unable = [f"{s.name}: {s.missing}" for s in named if s.missing]
    if unable:  # asked for by name: say so before running anything
        click.echo(f"cannot run {'; '.join(unable)}", err=True)
        sys.exit(2)
    chosen = named or list(known.values())
    for scenario in [s for s in chosen if s.missing]:  # all built-in ones: run the rest
        click.echo(f"skipped {scenario.name}: {scenario.missing}", err=True)
    return [s for s in chosen if not s.missing], [
        (s.name, f"needs {s.needs}") for s in chosen if s.needs
    ]


def _inner(kind: str) -> Callable[[str], object] | None:
    """How a run builds the client under test, for the fake's base URL."""
    if kind == "httpx":
        return None
    from stigg_cache.adapters import require  # noqa: PLC0415
    from stigg_cache.chaos.scenario import API_KEY  # noqa: PLC0415

    if kind == "rest":
        sdk: Any = require("stigg", "stigg", "rest")
        if not hasattr(sdk, "AsyncStigg"):
            raise click.UsageError(
                "--client rest needs the REST SDK: pip install 'stigg-cache[rest]'"
            )
        return lambda base_url: sdk.Stigg(api_key=API_KEY, base_url=base_url)
    sdk = require("stigg", "stigg-api-client-v2", "graphql-v2")
    if not hasattr(getattr(sdk, "Stigg", None), "create_client"):
        raise click.UsageError(
            f"--client {kind} needs a GraphQL SDK: pip install 'stigg-cache[graphql-v2]' "
            "(or [graphql] for the older one)"
        )
    edge = kind == "graphql-edge"
    return lambda base_url: sdk.Stigg.create_client(
        API_KEY, api_url=f"{base_url}/graphql", enable_edge=edge, edge_api_url=f"{base_url}/edge"
    )


def _with_progress(run: Any) -> Any:
    """Run a scenario; with rich (the [chaos] extra) and a terminal, show it live."""
    try:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn  # noqa: PLC0415
    except ImportError:
        return run.run()
    import threading  # noqa: PLC0415

    done: list[Any] = []
    worker = threading.Thread(target=lambda: done.append(run.run()), daemon=True)
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[calls]}"),
    )
    with Progress(*columns, transient=True) as progress:
        task = progress.add_task(run.scenario.name, total=run.scenario.duration_s, calls="")
        started = time.monotonic()
        worker.start()
        while worker.is_alive():
            checks, reports = len(run.history.of("check")), len(run.history.of("report"))
            phase = "" if time.monotonic() - started < run.scenario.duration_s else " recovering"
            progress.update(
                task,
                completed=min(time.monotonic() - started, run.scenario.duration_s),
                calls=f"{checks} checks, {reports} reports{phase}",
            )
            worker.join(0.2)
    if not done:
        raise click.ClickException(f"scenario {run.scenario.name} ended without a report")
    return done[0]


def _outcome(report: Any) -> str:
    """One scenario's outcome, as its run ends."""
    if report.skipped:
        return f"SKIPPED: {report.skipped}"
    counts = f"{report.checks} checks, {report.reports} reports"
    return f"{'PASS' if report.passed else 'FAIL'} in {report.seconds:.1f}s, {counts}"


def _scorecard(reports: list[Any]) -> str:
    lines = []
    for report in reports:
        if report.skipped:
            lines.append(f"{report.scenario}  skipped: {report.skipped}")
            continue
        lines.append(f"{report.scenario}  ({report.seconds:.1f}s)")
        lines += [f"  {v.shown:<10}  {v.name:<52} {v.figures}" for v in report.verdicts]
    return "\n".join(lines)


def _summary(reports: list[Any], skipped: list[tuple[str, str]]) -> str:
    """The last line: ``13 passed, 1 skipped (clock-jumps: needs the [chaos] extra)``."""
    skipped = skipped + [(r.scenario, r.skipped) for r in reports if r.skipped]
    failed = [r.scenario for r in reports if not r.passed and not r.skipped]
    passed = sum(1 for r in reports if r.passed)
    parts = [f"{passed} passed"]
    if failed:
        parts.append(f"{len(failed)} failed ({', '.join(failed)})")
    if skipped:
        parts.append(f"{len(skipped)} skipped ({'; '.join(f'{n}: {w}' for n, w in skipped)})")
    return ", ".join(parts)


def _report_json(report: Any) -> dict[str, Any]:
    return {
        "scenario": report.scenario,
        "seconds": round(report.seconds, 3),
        "passed": report.passed,
        "skipped": report.skipped,
        "checks": report.checks,
        "reports": report.reports,
        "verdicts": [
            {"name": v.name, "passed": v.passed, "judged": v.judged, "figures": v.figures}
            for v in report.verdicts
        ],
    }
