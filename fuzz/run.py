"""Runs every fuzz target for a bounded time and reports executions and crashes (make fuzz).

Usage: python -m fuzz.run [SECONDS] (default 60 a target). Exits 1 if any target crashed;
crashing inputs are kept in fuzz/crashes/ (add them to the target's corpus once fixed).
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).parent
TARGETS = ("policy", "snapshot", "rest", "state", "usage", "store_entry", "outbox_row")


def run(target: str, seconds: int) -> tuple[int, list[Path]]:
    """Fuzz one target; returns (executions, crashing inputs)."""
    crashes = HERE / "crashes"
    crashes.mkdir(exist_ok=True)
    before = set(crashes.glob(f"{target}-*"))
    with tempfile.TemporaryDirectory() as grown:  # new inputs go here, seeds stay as committed
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                f"fuzz.fuzz_{target}",
                f"-max_total_time={seconds}",
                "-timeout=10",
                "-rss_limit_mb=2048",
                f"-artifact_prefix={crashes}/{target}-",
                grown,
                str(HERE / "corpus" / target),
            ],
            cwd=HERE.parent,
            capture_output=True,
            text=True,
            timeout=seconds + 120,
            check=False,
        )
    found = re.search(r"Done (\d+) runs", done.stderr)
    executions = int(found.group(1)) if found else 0
    new = sorted(set(crashes.glob(f"{target}-*")) - before)
    if done.returncode and not new:
        print(done.stderr[-2000:], file=sys.stderr)
        new = [Path(f"<exit {done.returncode}>")]
    return executions, new


def main(argv: list[str]) -> int:
    seconds = int(argv[0]) if argv else 60
    failed = False
    print(f"{'target':<14}{'executions':>12}  crashes")
    for target in TARGETS:
        executions, crashes = run(target, seconds)
        failed |= bool(crashes)
        print(
            f"{target:<14}{executions:>12,}  {', '.join(map(str, crashes)) or 'none'}", flush=True
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
