"""Rows run in forked workers of one client, as ``gunicorn --preload`` runs an app.

A worker never returns into the benchmark: it ends with ``os._exit``, printing its
traceback first if it failed, and the parent raises when any worker failed (a row
some workers did not finish means nothing).
"""

from __future__ import annotations

import functools
import os
import struct
import time
import traceback
from collections.abc import Callable

_STAMP = struct.Struct("d")  # a worker's perf_counter() when it finished


def _in_workers(workers: int, work: Callable[[], None]) -> None:
    """Run ``work`` in ``workers`` forked children of one client (in this process for 1)."""
    if workers == 1:
        work()
        return
    pids = [_fork(work) for _ in range(workers)]
    _reap(pids)


def _in_processes(
    workers: int, prepare: Callable[[int], object], work: Callable[[int], object]
) -> float:
    """Seconds from the moment every one of ``workers`` forked children has run
    ``prepare(its index)`` (its set-up, untimed) to the moment the last has run
    ``work(its index)``. One worker is forked too: every figure comes from a child.
    """
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    done_r, done_w = os.pipe()

    def child(index: int) -> None:
        for end in (ready_r, go_w, done_r):
            os.close(end)
        prepare(index)
        os.write(ready_w, b"r")
        os.close(ready_w)  # the parent sees EOF once every worker is ready or gone
        os.read(go_r, 1)  # returns at EOF: when the parent closes its end, all start
        work(index)
        os.write(done_w, _STAMP.pack(time.perf_counter()))  # CLOCK_MONOTONIC: one for all

    pids = [_fork(functools.partial(child, index)) for index in range(workers)]
    for end in (ready_w, go_r, done_w):
        os.close(end)
    with os.fdopen(ready_r, "rb") as ready, os.fdopen(done_r, "rb") as done:
        ready.read()  # to EOF: every worker is ready (or failed)
        started = time.perf_counter()
        os.close(go_w)  # every worker starts
        stamps = done.read()  # to EOF: every worker has finished (or failed)
    _reap(pids)
    return max(float(stamp) for (stamp,) in _STAMP.iter_unpack(stamps)) - started


def _fork(work: Callable[[], None]) -> int:
    """A forked child running ``work``; its pid."""
    pid = os.fork()
    if pid == 0:  # a worker: never return into the benchmark
        code = 0
        try:
            work()
        except BaseException:
            traceback.print_exc()  # the parent raises; this says why
            code = 1
        os._exit(code)
    return pid


def _reap(pids: list[int]) -> None:
    failed = sum(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) != 0 for pid in pids)
    if failed:
        raise RuntimeError(f"{failed} of {len(pids)} forked workers failed: the row means nothing")
