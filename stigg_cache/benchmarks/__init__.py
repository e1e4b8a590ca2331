"""`make bench` / `stigg-cache bench`: every figure a ratio against a baseline run alongside.

Each row times our operation and its baseline in the same process, alternating
rounds so machine noise hits both alike, and reports medians (and p99 over
rounds). Nothing here is a test: this machine is shared and noisy, so the suite
only smoke-runs it with tiny sizes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from pathlib import Path
from typing import Any

import attrs

from stigg_cache.benchmarks._common import TINY, Row, Sizes
from stigg_cache.benchmarks.asyncio_check import bench_async_check
from stigg_cache.benchmarks.checks import bench_checks
from stigg_cache.benchmarks.first_check import bench_first_check
from stigg_cache.benchmarks.l1 import bench_l1
from stigg_cache.benchmarks.memory import bench_memory
from stigg_cache.benchmarks.outage import bench_outage
from stigg_cache.benchmarks.startup import bench_startup
from stigg_cache.benchmarks.usage import bench_drain, bench_report_event
from stigg_cache.benchmarks.workers import bench_worker_reads


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
    }


def run(sizes: Sizes) -> list[Row]:
    """Every row, in table order."""
    with tempfile.TemporaryDirectory(prefix="stigg-cache-bench-") as folder:
        tmp = Path(folder)
        rows = bench_checks(sizes, tmp)
        rows += bench_first_check(sizes, tmp)
        rows += bench_report_event(sizes, tmp)
        rows.append(bench_memory(sizes))
        rows.append(bench_drain(sizes, tmp))
        rows.append(bench_async_check(sizes, tmp))
        rows.append(bench_worker_reads(sizes, tmp))
        rows += bench_startup(sizes, tmp)
        rows += bench_l1(sizes, tmp)
        rows += bench_outage(sizes, tmp)
    return sorted(rows, key=lambda row: row.number)


def table(rows: list[Row]) -> str:
    """The rows as a fixed-width table."""
    header = f"{'#':>2}  {'measure':<48} {'ours':>10} {'baseline':>10}  {'ratio':>7}  target"
    lines = [header, "-" * 108]
    lines += [
        f"{row.number:>2}  {row.measure:<48} {row.ours:>8.2f}{row.unit:>2} "
        f"{row.baseline:>8.2f}{row.unit:>2}  {row.ratio:>6.2f}x  {row.target:<18} "
        f"{'pass' if row.passed else 'FAIL'}"
        for row in rows
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Print the table, write JSON; exit 0 whatever the figures (benchmarks inform)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="bench/results.json", help="where to write the JSON")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes: a smoke run")
    args = parser.parse_args(argv)
    rows = run(TINY if args.tiny else Sizes())
    print(table(rows))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(
        json.dumps({"machine": machine(), "rows": [attrs.asdict(row) for row in rows]}, indent=2)
    )
    print(f"\n{sum(r.passed for r in rows)} of {len(rows)} targets met; JSON in {args.out}")
    return 0
