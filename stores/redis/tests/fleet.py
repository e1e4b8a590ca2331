"""Client processes of a fleet, for the multi-process tests."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

WORKER = Path(__file__).with_name("redis_worker.py")


class Worker:
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
        self.process = subprocess.Popen(
            args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1, env=env
        )
        assert self._read() == {"ready": True}

    def _read(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert line, f"worker exited with {self.process.poll()}"
        answer: dict[str, Any] = json.loads(line)
        return answer

    def ask(self, op: str, **fields: Any) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({"op": op, **fields}) + "\n")
        self.process.stdin.flush()
        return self._read()

    def close(self) -> None:
        if self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.write('{"op": "exit"}\n')
            self.process.stdin.close()
            self.process.wait(timeout=30)
        self._release_pipes()

    def kill(self) -> None:
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)
        self._release_pipes()

    def _release_pipes(self) -> None:
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None and not pipe.closed:
                with contextlib.suppress(BrokenPipeError):  # unflushed input of a dead process
                    pipe.close()
