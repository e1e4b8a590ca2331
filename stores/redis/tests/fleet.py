"""Client processes of a fleet, for the multi-process tests."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from piped import Piped

WORKER = Path(__file__).with_name("redis_worker.py")


class Worker(Piped):
    """One ResilientClient in its own process, answering commands."""

    def __init__(
        self,
        store: str,
        stigg_url: str,
        api_key: str,
        *,
        lease_s: float = 30.0,
        policy: Path | None = None,
        events_per_second: float | None = None,
        cache_home: Path | None = None,
    ) -> None:
        """``cache_home``: the user's cache directory (``XDG_CACHE_HOME``), where default
        files go; ``events_per_second``: the client's pacing of events."""
        args = [sys.executable, str(WORKER), store, stigg_url, api_key, str(lease_s)]
        args.append("" if policy is None else str(policy))
        args.append("" if events_per_second is None else repr(events_per_second))
        env = dict(os.environ)
        if cache_home is not None:
            env["XDG_CACHE_HOME"] = str(cache_home)
        super().__init__(args, env)
