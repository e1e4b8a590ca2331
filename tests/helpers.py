"""Small helpers for tests that wait on background work, bounded in time."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from stigg_cache import FallbackPolicy, FeaturePolicy, Grant, ResilientClient, Staleness
from stigg_cache.testing.fake import FakeStigg

WAIT_LIMIT_S = 10.0
ENTRY_POINT = Path(sys.executable).with_name("stigg-cache")  # as pip installed it here


def eventually(condition: Callable[[], bool], *, within_s: float = WAIT_LIMIT_S) -> None:
    """Poll ``condition`` until true; fail after ``within_s`` seconds."""
    deadline = time.monotonic() + within_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within_s}s")
        time.sleep(0.01)


def while_progressing(count: Callable[[], int], goal: int, *, stall_s: float = 20.0) -> None:
    """Poll ``count`` until it reaches ``goal``; fail once it has not grown for ``stall_s``.

    For CPU-bound background work (thousands of sends): on a loaded machine it takes as
    long as it takes, and only a stall is a failure.
    """
    last, deadline = count(), time.monotonic() + stall_s
    while last < goal:
        time.sleep(0.05)
        now = count()
        if now > last:
            last, deadline = now, time.monotonic() + stall_s
        elif time.monotonic() > deadline:
            raise AssertionError(f"stalled at {last} of {goal} for {stall_s}s")


def metered_fallback(limit: float, *, fresh_for_s: float = 60) -> FallbackPolicy:
    """A policy whose fallback grants ``api_calls`` up to ``limit`` (Stigg out of reach)."""
    return FallbackPolicy(
        staleness=Staleness(fresh_for_s=fresh_for_s, max_staleness_s=3600),
        features={"api_calls": FeaturePolicy(fallback=Grant(has_access=True, usage_limit=limit))},
    )


def client_on(fake: FakeStigg, where: Path | str, **options: Any) -> ResilientClient:
    """The built-in client on the fake, with its store (and the outbox beside it) at ``where``:
    a store URL, or a directory for the default deployment's SQLite file."""
    from tests.conftest import API_KEY

    options.setdefault("store", where if isinstance(where, str) else f"sqlite:///{where}/cache.db")
    options.setdefault("check_timeout", 1.0)
    return ResilientClient(None, api_key=API_KEY, base_url=fake.url, **options)


def run_installed(
    *args: str, cwd: Path, timeout_s: float = 60, **environment: str
) -> subprocess.CompletedProcess[str]:
    """The installed ``stigg-cache`` command, in ``cwd``, the user's cache folder under it
    (``XDG_CACHE_HOME``) and ``environment`` added to this process's."""
    variables = {**os.environ, "XDG_CACHE_HOME": str(cwd / "user-cache"), **environment}
    return subprocess.run(
        [str(ENTRY_POINT), *args],
        cwd=cwd,
        env=variables,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
