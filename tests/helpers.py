"""Small helpers for tests that wait on background work, bounded in time."""

from __future__ import annotations

import time
from collections.abc import Callable

WAIT_LIMIT_S = 10.0


def eventually(condition: Callable[[], bool], *, within_s: float = WAIT_LIMIT_S) -> None:
    """Poll ``condition`` until true; fail after ``within_s`` seconds."""
    deadline = time.monotonic() + within_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within_s}s")
        time.sleep(0.01)
