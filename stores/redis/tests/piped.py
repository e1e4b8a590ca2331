"""A test process driven line by line over its stdin and stdout (JSON in, JSON out): the
parent's side of ``redis_worker.py`` and ``host.py``."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from typing import Any


class Piped:
    """A child process that prints ``{"ready": true}`` once built, then answers each
    command line with one line."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None) -> None:
        self.process = subprocess.Popen(
            args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1, env=env
        )
        assert self._read() == {"ready": True}

    def _read(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert line, f"{type(self).__name__.lower()} exited with {self.process.poll()}"
        answer: dict[str, Any] = json.loads(line)
        return answer

    def ask(self, op: str, **fields: Any) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({"op": op, **fields}) + "\n")
        self.process.stdin.flush()
        return self._read()

    def pause(self) -> None:
        """Freeze the process (a host cut off from everything)."""
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.process.pid, signal.SIGCONT)

    def close(self) -> None:
        """Ask it to exit (it closes its client); killed if it has not within 30 s."""
        if self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.write('{"op": "exit"}\n')
            self.process.stdin.close()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self._release_pipes()

    def kill(self) -> None:
        """SIGKILL: nothing it holds is given back."""
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)
        self._release_pipes()

    def _release_pipes(self) -> None:
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None and not pipe.closed:
                with contextlib.suppress(BrokenPipeError):  # unflushed input of a dead process
                    pipe.close()
