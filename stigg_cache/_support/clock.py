"""The clock every time-dependent part takes, so tests can control time.

Ages inside one process run on the monotonic clock (a wall-clock jump cannot
make data look fresher); snapshots persist wall time so ages survive restarts.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """Where stigg-cache reads time."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards."""
        ...

    def time(self) -> float:
        """Wall-clock seconds since the epoch."""
        ...


class SystemClock:
    """The real clocks of this machine."""

    monotonic = staticmethod(time.monotonic)
    time = staticmethod(time.time)


SYSTEM_CLOCK = SystemClock()
"""This machine's clocks: what every part reads unless a test gives it another."""
