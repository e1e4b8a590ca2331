"""`make bench` / `stigg-cache bench`: every figure a ratio against a baseline run alongside.

Each timed row runs our operation and its baseline in the same process, in
alternated rounds so the machine's noise hits both alike, and is judged on the
median of the per-round ratios; it shows their spread (lowest and highest), and
the JSON keeps every round. Rows that are not timings (bytes, hit rates, counts,
one run against a deadline) are judged on their one measure. Nothing here is a
test: this machine is shared and noisy, so the suite only smoke-runs it with tiny
sizes.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import multiprocessing
import os
import platform
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import attrs

from stigg_cache.benchmarks._common import EVERY, MEDIAN_RATIO, TINY, Row, Sizes, Wanted
from stigg_cache.benchmarks.asyncio_check import bench_async_check
from stigg_cache.benchmarks.checks import bench_checks
from stigg_cache.benchmarks.cold import bench_cold
from stigg_cache.benchmarks.first_check import bench_first_check
from stigg_cache.benchmarks.l1 import bench_l1
from stigg_cache.benchmarks.memory import bench_memory
from stigg_cache.benchmarks.outage import REDIS_NEEDS, bench_outage
from stigg_cache.benchmarks.startup import bench_startup
from stigg_cache.benchmarks.usage import bench_drain, bench_report_event
from stigg_cache.benchmarks.workers import bench_worker_reads


def machine(load_at_start: tuple[float, float, float]) -> dict[str, Any]:
    """What the figures were measured on, and how busy it was (load averages over 1, 5
    and 15 minutes, at the start and the end of the run: other work on the machine moves
    figures, and rows of several processes most of all)."""
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "load_average": {"start": load_at_start, "end": os.getloadavg()},
    }


# Each group of rows measured together: the labels of its rows, and what measures them
# (a group given a ``Wanted`` skips the rows it does not want; the others run whole).
Group = Callable[[Sizes, Path, Wanted], list[Row]]
GROUPS: tuple[tuple[tuple[str, ...], Group], ...] = (
    (("1", "2", "3", "8", "11"), bench_checks),
    (("4", "5"), bench_first_check),
    (("6", "7", "13"), bench_report_event),
    (("9",), lambda sizes, _tmp, _wanted: [bench_memory(sizes)]),
    (("10",), lambda sizes, tmp, _wanted: [bench_drain(sizes, tmp)]),
    (("12",), lambda sizes, tmp, _wanted: [bench_async_check(sizes, tmp)]),
    (("14",), lambda sizes, tmp, _wanted: [bench_worker_reads(sizes, tmp)]),
    (("15", "16", "23"), lambda sizes, tmp, _wanted: bench_startup(sizes, tmp)),
    (
        ("17", "18", "19", "20", "21", "22", "25", "26"),
        lambda sizes, tmp, _wanted: bench_l1(sizes, tmp),
    ),
    (("27", "28", "29"), lambda sizes, tmp, _wanted: bench_outage(sizes, tmp)),
    (("24a", "24b"), bench_cold),
)
LABELS = frozenset(label for labels, _ in GROUPS for label in labels)


def run(sizes: Sizes, wanted: Wanted = EVERY) -> list[Row]:
    """The wanted rows (every row unless told), in table order.

    Each group runs in a new Python process of its own (spawned, not forked): no row is
    measured in what the rows before it left. A process keeps the memory it freed (row
    9's million entitlements leave about 1 GB behind), and the workers row 24a forks
    then copy each page of it they write to: run after row 9 in one process, row 24a read
    1.35x against 1.9x on its own.
    """
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="stigg-cache-bench-") as folder:
        for index, (labels, _) in enumerate(GROUPS):
            if any(wanted(*_split(label)) for label in labels):
                rows += _made_apart(index, sizes, folder, wanted)
    return sorted(
        (row for row in rows if wanted(row.number, row.part)), key=lambda r: (r.number, r.part)
    )


def _made_apart(index: int, sizes: Sizes, folder: str, wanted: Wanted) -> list[Row]:
    """The rows of ``GROUPS[index]``, made in a new process (spawned). An error there is
    raised here, with its traceback; stopped here (Ctrl-C, an error), the run stops that
    process too, and it ends by itself if this one is killed."""
    spawn = multiprocessing.get_context("spawn")
    receive, send = spawn.Pipe(duplex=False)
    process = spawn.Process(target=_group, args=(send, os.getpid(), index, sizes, folder, wanted))
    process.start()
    send.close()  # the child holds the only sending end: its end is our EOF
    made: list[Row] = []
    failure: str | None = "its process ended with nothing to say"
    try:
        made, failure = receive.recv()
    except EOFError:
        pass
    except BaseException:  # stopped here (Ctrl-C, an error): the group must not run on
        process.terminate()
        raise
    finally:
        receive.close()
        process.join()  # having sent its rows, it ends by itself: its clean-up is its own
    if failure is not None:
        labels = ", ".join(GROUPS[index][0])
        raise RuntimeError(f"rows {labels} failed (exit code {process.exitcode}): {failure}")
    return made


PARENT_POLL_S = 0.5


def _group(
    send: Connection, parent: int, index: int, sizes: Sizes, folder: str, wanted: Wanted
) -> None:
    """In a new process: send the rows of ``GROUPS[index]``, or the traceback that stopped
    them. The process ends when the run that started it is gone: a run stopped by SIGTERM
    (``timeout``, ``kill``, a cancelled CI job) ends at once, without a word to it."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_S)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="bench-parent-watch").start()
    try:
        outcome: tuple[list[Row], str | None] = (
            GROUPS[index][1](sizes, Path(folder), wanted),
            None,
        )
    except Exception:
        outcome = ([], traceback.format_exc())
    send.send(outcome)
    send.close()


def _split(label: str) -> tuple[int, str]:
    digits = label.rstrip("ab")
    return int(digits), label[len(digits) :]


def wanted_rows(text: str) -> Wanted:
    """``--rows``: labels and numbers separated by commas (``3,5,24a``; ``24``: 24a and 24b)."""
    labels = frozenset(label.strip() for label in text.split(",") if label.strip())
    known = LABELS | {label.rstrip("ab") for label in LABELS}
    unknown = sorted(labels - known)
    if unknown or not labels:
        named = ", ".join(unknown) if unknown else repr(text)
        raise argparse.ArgumentTypeError(f"no such rows: {named}")
    return Wanted(labels)


# What the baselines need: (module, distribution, extra, what it is the baseline of).
BASELINE_SDKS = (
    ("ldclient", "launchdarkly-server-sdk", "bench", "LaunchDarkly's SDK, row 2"),
    ("stigg", "stigg", "rest", "Stigg's REST SDK, row 11"),
)


def missing_extras() -> list[tuple[str, str]]:
    """The extras whose SDKs a full run needs and are not installed: (extra, what for).

    The REST SDK is told by its distribution: the GraphQL SDKs install a ``stigg`` too.
    """
    missing = []
    for module, distribution, extra, why in BASELINE_SDKS:
        try:
            found = importlib.util.find_spec(module) is not None
            importlib.metadata.distribution(distribution)
        except (ImportError, ValueError):  # ValueError: a module set to None in sys.modules
            found = False
        if not found:
            missing.append((extra, why))
    return missing


def table(rows: list[Row]) -> str:
    """The rows as a fixed-width table, and what its ratio and spread mean."""
    wide = max(len(row.measure) for row in rows)
    spreads = [_spread(row) for row in rows]
    spread_wide = max(len(spread) for spread in spreads)
    header = (
        f"{'#':<4}{'measure':<{wide}} {'ours':>10} {'baseline':>10}  {'ratio':>7}  "
        f"{'spread (rounds)':<{spread_wide}}  {'target':<19} verdict"
    )
    lines = [header, "-" * len(header)]
    lines += [
        f"{row.label:<4}{row.measure:<{wide}} {row.ours:>8.2f}{row.unit:>2} "
        f"{row.baseline:>8.2f}{row.unit:>2}  {row.ratio:>6.2f}x  {spread:<{spread_wide}}  "
        f"{row.target:<19} {row.verdict}"
        for row, spread in zip(rows, spreads, strict=True)
    ]
    lines += [
        "",
        "ratio: the median of the per-round ratios (ours and the baseline alternate, each",
        "round's ratio from its own pair); spread: the lowest and highest of them, over how",
        "many rounds. A row without rounds, or judged on another figure, names what is judged.",
    ]
    return "\n".join(lines)


def _spread(row: Row) -> str:
    if row.spread is None or row.basis != MEDIAN_RATIO:
        return row.basis
    low, high = row.spread
    return f"{low:.2f}-{high:.2f}x ({len(row.rounds)})"


def main(argv: list[str] | None = None) -> int:
    """Print the table, write JSON; exit 0 whatever the figures (benchmarks inform), 2 when
    a baseline's SDK is not installed (the message names the extras)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="bench/results.json", help="where to write the JSON")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes: a smoke run")
    parser.add_argument(
        "--rows",
        type=wanted_rows,
        default=EVERY,
        help="only these rows, by label or number: 3,5,24a (24: 24a and 24b); default every row",
    )
    args = parser.parse_args(argv)
    missing = missing_extras()
    if missing:
        extras = ",".join(extra for extra, _ in missing)
        whats = "; ".join(why for _, why in missing)
        print(
            f"the benchmarks compare against other SDKs ({whats}): "
            f"pip install 'stigg-cache[{extras}]'",
            file=sys.stderr,
        )
        return 2
    load = os.getloadavg()
    rows = run(TINY if args.tiny else Sizes(), args.rows)
    if args.rows(29) and not any(row.number == 29 for row in rows):
        print(f"row 29 not measured: it needs {REDIS_NEEDS}", file=sys.stderr)
    if not rows:
        return 0
    if args.tiny:  # a smoke run's figures are noise: no target is judged on them
        rows = [attrs.evolve(row, judged=False) for row in rows]
    print(table(rows))
    on = machine(load)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(
        json.dumps({"machine": on, "rows": [attrs.asdict(row) for row in rows]}, indent=2)
    )
    met = (
        "tiny sizes: no target judged (a smoke run)"
        if args.tiny
        else f"{sum(r.passed for r in rows)} of {len(rows)} targets met"
    )
    print(
        f"load average (1 minute): {load[0]:.2f} at the start, "
        f"{on['load_average']['end'][0]:.2f} at the end, on {on['cpus']} CPUs"
    )
    print(f"\n{met}; JSON in {args.out}")
    return 0
