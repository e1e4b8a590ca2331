"""Run a function in a forked child of the test process and bring back its result.

The child inherits everything the parent built (clients, pools, threads'
leftovers): exactly what a ``gunicorn --preload`` worker inherits. It never
returns into pytest: it ends with ``os._exit`` after writing its result, and an
alarm kills it if it hangs, so a broken child fails the test instead of hanging it.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

CHILD_LIMIT_S = 30


def fork_child(work: Callable[[], Any], *, limit_s: int = CHILD_LIMIT_S) -> int:
    """Fork; the child runs ``work`` and reports its JSON result (killed after ``limit_s``).
    Returns the child's pid."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never return into the test runner
        os.close(read_end)
        signal.alarm(limit_s)
        _fresh_log_streams()
        try:
            try:
                text = json.dumps({"result": work()})
            except BaseException:  # everything goes back to the parent, unserialisable too
                text = json.dumps({"error": traceback.format_exc()})
            with os.fdopen(write_end, "w") as pipe:
                pipe.write(text)
        finally:
            os._exit(0)
    os.close(write_end)
    _pipes[pid] = read_end
    return pid


def _fresh_log_streams() -> None:
    """Give every logging handler of the child a stream of its own (``/dev/null``).

    A parent thread writing a log line as the fork happened (a flusher saying Redis is
    unreachable) holds the lock of the stream's buffer, which ``logging`` does not renew
    in the child (it renews the handlers' own locks): the child's first log line then
    waited forever (one CI run). The child's lines are never read by the test anyway.
    """
    loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    for each in loggers:
        for handler in getattr(each, "handlers", ()):
            if isinstance(handler, logging.StreamHandler):
                handler.stream = Path(os.devnull).open("w")  # noqa: SIM115 - the child's to its end


def child_result(pid: int) -> Any:
    """Wait for a child of :func:`fork_child`; its result, or an AssertionError with its trace."""
    read_end = _pipes.pop(pid)
    with os.fdopen(read_end) as pipe:
        text = pipe.read()
    _, status = os.waitpid(pid, 0)
    if not text:
        raise AssertionError(f"child {pid} died without a result (wait status {status})")
    outcome = json.loads(text)
    if "error" in outcome:
        raise AssertionError(f"child {pid} failed:\n{outcome['error']}")
    return outcome["result"]


def in_child(work: Callable[[], Any], *, limit_s: int = CHILD_LIMIT_S) -> Any:
    """Fork, run ``work`` in the child, and return its result."""
    return child_result(fork_child(work, limit_s=limit_s))


def settle(seconds: float = 0.05) -> None:
    """Let a request started on a background thread reach the wire before a fork."""
    time.sleep(seconds)


_pipes: dict[int, int] = {}
