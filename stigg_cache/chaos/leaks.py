"""What a run's clients leave behind once closed: threads, file descriptors and memory.

Memory is judged on what the library's own code allocated (the package's frame nearest
each allocation is the library's, not the harness's) and still holds after every client
is closed and collected, traced with :mod:`tracemalloc`. A client that keeps answers,
snapshots or records in something that outlives it (a module's list, a registry, a
cycle with a thread) fails; memory the run keeps on purpose (the history of every call,
which holds payloads and ages the client made) is told apart by walking it. Around the
measurement the library's memoising caches (``functools.lru_cache``: bounded, shared by
every client) are emptied, and a client has lived once before it starts, so the first
client's one-off work (imports, compiled templates) is in the baseline, not the verdict.
"""

from __future__ import annotations

import gc
import sys
import threading
import time
import tracemalloc
from collections.abc import Iterable, Iterator
from pathlib import Path

import stigg_cache
from stigg_cache.chaos.history import Verdict
from stigg_cache.client import ResilientClient

RETAINED_BOUND_BYTES = 64 * 1024  # what closed clients may leave: no leak of one object a call
THREADS_GONE_S = 10.0  # closed clients' threads end within this (bounded joins)
TRACED_FRAMES = 4  # enough to see past generated code and the standard library to our line
STRAY_FDS = 2  # descriptors the interpreter may open meanwhile (logging, a lazy import)
_PACKAGE = str(Path(stigg_cache.__file__).parent) + "/"
_NOT_THE_LIBRARY = (f"{_PACKAGE}chaos/", f"{_PACKAGE}testing/")  # the harness's own code


def _by_the_library(traceback: tracemalloc.Traceback) -> bool:
    """Whether the package's frame nearest the allocation is the library's (not the
    harness's): a snapshot json parsed for the codec is the library's, the same parse
    for the fake Stigg is not."""
    for frame in traceback:
        if frame.filename.startswith(_PACKAGE):
            return not frame.filename.startswith(_NOT_THE_LIBRARY)
    return False


def _library_bytes() -> int:
    """Bytes traced now that the library allocated."""
    snapshot = tracemalloc.take_snapshot()
    return sum(trace.size for trace in snapshot.traces if _by_the_library(trace.traceback))


def _clear_memos() -> None:
    """Empty the library's memoising caches (they outlive clients by design)."""
    for name, module in list(sys.modules.items()):
        if name == "stigg_cache" or name.startswith("stigg_cache."):
            for value in list(vars(module).values()):
                clear = getattr(value, "cache_clear", None)
                if callable(clear):
                    clear()


def _walk(roots: Iterable[object]) -> Iterator[object]:
    """Every object reachable from ``roots`` through containers and attrs instances."""
    seen: set[int] = set()
    stack = list(roots)
    while stack:
        item = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        yield item
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple | set | frozenset):
            stack.extend(item)
        else:  # an attrs instance (an Operation): its fields
            fields = getattr(type(item), "__attrs_attrs__", ())
            stack.extend(getattr(item, field.name) for field in fields)


def _library_bytes_in(kept: Iterable[object]) -> int:
    """Bytes of what ``kept`` holds that the library's lines allocated."""
    total = 0
    for item in _walk(kept):
        traceback = tracemalloc.get_object_traceback(item)
        if traceback is not None and _by_the_library(traceback):
            total += sys.getsizeof(item)
    return total


def _open_fds() -> int:
    try:
        return sum(1 for _ in Path("/proc/self/fd").iterdir())
    except OSError:
        return 0


class LeakWatch:
    """Notes the process before a run's first client and judges it after its last."""

    def __init__(self) -> None:
        """Note threads and file descriptors (before the run builds anything)."""
        gc.collect()
        self._threads = threading.active_count()
        self._fds = _open_fds()
        self._tracing_here = False
        self._bytes = 0

    def start_memory(self) -> None:
        """Trace memory from now (call once a client has lived: see the module's notes)."""
        if not tracemalloc.is_tracing():
            tracemalloc.start(TRACED_FRAMES)
            self._tracing_here = True
        _clear_memos()
        gc.collect()
        tracemalloc.reset_peak()
        self._bytes = _library_bytes()

    def verdict(self, kept: Iterable[object]) -> Verdict:
        """Threads ended, descriptors closed, no client alive, and at most
        ``RETAINED_BOUND_BYTES`` of the library's allocations left beyond ``kept``
        (what the run holds on purpose)."""
        deadline = time.monotonic() + THREADS_GONE_S
        while time.monotonic() < deadline and threading.active_count() > self._threads:
            time.sleep(0.1)
        _clear_memos()
        gc.collect()
        threads = threading.active_count() - self._threads
        fds = _open_fds() - self._fds
        alive = sum(1 for thing in gc.get_objects() if isinstance(thing, ResilientClient))
        retained = _library_bytes() - self._bytes - _library_bytes_in(kept)
        peak = tracemalloc.get_traced_memory()[1]
        self.stop()
        return Verdict(
            "threads, file descriptors and memory back to their baseline",
            threads <= 0 and fds <= STRAY_FDS and alive == 0 and retained <= RETAINED_BOUND_BYTES,
            f"{threads:+d} threads, {fds:+d} file descriptors, {alive} clients alive, "
            f"{retained / 1024:+,.1f} KiB kept by stigg-cache's code (at most "
            f"{RETAINED_BOUND_BYTES // 1024} KiB; the run peaked at {peak / 2**20:,.1f} MiB)",
        )

    def stop(self) -> None:
        """Stop tracing, if it was started here (a run that ended early calls it too)."""
        if self._tracing_here:
            tracemalloc.stop()
            self._tracing_here = False
