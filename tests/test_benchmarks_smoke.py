"""The benchmark runs end to end at tiny sizes (its figures are not asserted: noisy machine)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from stigg_cache.cli import main


def test_bench_smoke_run_prints_every_row_and_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    result = CliRunner().invoke(main, ["bench", "--tiny", "--out", str(out)])
    assert result.exit_code == 0, result.output
    document = json.loads(out.read_text())
    assert [row["number"] for row in document["rows"]] == list(range(1, 27))
    assert all(row["ours"] > 0 for row in document["rows"])
    # every baseline did work, but plain LRU's hit rate on a round robin (row 19): none
    assert all(row["baseline"] > 0 for row in document["rows"] if row["number"] != 19)
    assert document["machine"]["cpus"]
    assert "warm boolean check (L1 hit)" in result.output
