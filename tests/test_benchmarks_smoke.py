"""The benchmark runs end to end at tiny sizes (its figures are not asserted: noisy machine)."""

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
    result = CliRunner().invoke(main, ["bench", "--tiny", "--out", str(out)])
    assert result.exit_code == 0, result.output
    document = json.loads(out.read_text())
    numbers = [row["number"] for row in document["rows"]]
    with_redis = os.environ.get("CI") or _redis_answers()  # in CI: a Redis, always
    assert numbers == list(range(1, 30 if with_redis else 29))
    if with_redis:  # row 29 filled two namespaces: nothing of them is left in Redis
        every_key = f"*stigg-cache:{BENCH_PREFIX}*"  # store and outbox ({hash-tagged}) alike
        leftovers = redis.Redis.from_url(REDIS_URL).scan_iter(every_key)
        assert next(leftovers, None) is None
    idle = [row for row in document["rows"] if row["ours"] <= 0]
    assert not idle, f"rows where our side did no work: {idle}"
    # every baseline did work, but plain LRU's hit rate on a round robin (row 19): none
    idle = [row for row in document["rows"] if row["baseline"] <= 0 and row["number"] != 19]
    assert not idle, f"rows where the baseline did no work: {idle}"
    assert document["machine"]["cpus"]
    assert "warm boolean check (L1 hit)" in result.output


def _redis_answers() -> bool:
    try:
        return bool(redis.Redis.from_url(REDIS_URL, socket_timeout=2).ping())
    except redis.RedisError:
        return False
