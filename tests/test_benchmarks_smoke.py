"""The benchmark runs end to end at tiny sizes (its figures are not asserted: noisy machine;
nor judged against the targets: tiny sizes measure nothing)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import redis
from click.testing import CliRunner

from stigg_cache.benchmarks.outage import BENCH_PREFIX, REDIS_URL
from stigg_cache.cli import main


def test_bench_smoke_run_prints_every_row_and_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    every_key = f"*stigg-cache:{BENCH_PREFIX}*"  # store and outbox ({hash-tagged}) alike
    before = _keys(every_key)  # a run killed midway (or another bench) may have left some
    result = CliRunner().invoke(main, ["bench", "--tiny", "--out", str(out)])
    assert result.exit_code == 0, result.output
    document = json.loads(out.read_text())
    numbers = [row["number"] for row in document["rows"]]
    with_redis = os.environ.get("CI") or _redis_answers()  # in CI: a Redis, always
    assert numbers == list(range(1, 30 if with_redis else 29))
    if with_redis:  # row 29 filled two namespaces: nothing of them is left in Redis
        assert _keys(every_key) - before == set()
    idle = [row for row in document["rows"] if row["ours"] <= 0]
    assert not idle, f"rows where our side did no work: {idle}"
    # every baseline did work, but plain LRU's hit rate on a round robin (row 19): none
    idle = [row for row in document["rows"] if row["baseline"] <= 0 and row["number"] != 19]
    assert not idle, f"rows where the baseline did no work: {idle}"
    assert document["machine"]["cpus"]
    assert "warm boolean check (L1 hit)" in result.output
    # tiny sizes measure nothing: no row is judged, none says pass or FAIL
    assert [row["judged"] for row in document["rows"]] == [False] * len(numbers)
    rows = [line for line in result.output.splitlines() if line[:2].strip().isdigit()]
    assert len(rows) == len(numbers)
    assert all(line.endswith(" not judged") for line in rows), rows
    assert "tiny sizes: no target judged" in result.output


def _keys(pattern: str) -> set[bytes]:
    """Keys matching ``pattern`` (none without a Redis)."""
    if not (os.environ.get("CI") or _redis_answers()):
        return set()
    connection = redis.Redis.from_url(REDIS_URL)
    try:
        return set(connection.scan_iter(pattern, 10_000))
    finally:
        connection.close()


def _redis_answers() -> bool:
    try:
        return bool(redis.Redis.from_url(REDIS_URL, socket_timeout=2).ping())
    except redis.RedisError:
        return False
