"""Workers started together open one fresh store and outbox without an error (DESIGN §8).

gunicorn boots its workers at once; each builds its client on the same new
SQLite files. Schema creation and the switch to WAL must wait for each other
instead of failing with "database is locked" (gunicorn then exits on "Worker
failed to boot").
"""

from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path

from stigg_cache import ResilientClient

WORKERS = 24
REPETITIONS = 10


def _open_at_once(folder: Path) -> list[str]:
    """Fork ``WORKERS`` children that open the same fresh files the moment they are let go."""
    gate_read, gate_write = os.pipe()
    children = []
    for _ in range(WORKERS):
        pid = os.fork()
        if pid == 0:  # the child: never return into the test runner
            os.close(gate_write)
            os.read(gate_read, 1)  # blocks until the parent closes the gate: all start at once
            code = 0
            try:
                _client(folder)
            except BaseException:  # every failure is reported, whatever it is
                traceback.print_exc(file=sys.stderr)
                code = 1
            os._exit(code)
        children.append(pid)
    os.close(gate_read)
    os.close(gate_write)
    failed = []
    for pid in children:
        _, status = os.waitpid(pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            failed.append(f"worker {pid}: exit {os.waitstatus_to_exitcode(status)}")
    return failed


def _client(folder: Path) -> None:
    """A whole client: its store, the outbox beside it, and the outbox's start-up read."""
    with ResilientClient(
        None, api_key="sk-unused", base_url="http://127.0.0.1:9", store=f"sqlite:///{folder}/c.db"
    ) as client:
        client.outbox.stats()


def test_workers_opening_fresh_files_at_once_all_start(tmp_path: Path) -> None:
    failures = []
    for repetition in range(REPETITIONS):
        folder = tmp_path / f"run-{repetition}"
        folder.mkdir()
        failures += _open_at_once(folder)
    assert failures == []
