"""The policy watcher reacts to the policy's own paths only (the file, the links to it, what
they point to), logs a rejection once and then once a minute while it stands, and says
why a file cannot be read."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any

import pytest
from watchdog.events import FileSystemEvent
from watchdog.observers import Observer

from stigg_cache.policy.watcher import PolicyWatcher, _PolicyEvents, links_of
from tests.helpers import eventually
from tests.policy.test_policy_reload import _applied, _policy

BROKEN = "version: 1\nrules: [oops\n"
LOG_LINES = 200  # an app logging beside its fallback.yaml while idle


def _rejections(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if getattr(record, "event", None) == "stigg_cache.policy_rejected"
    ]


def _watched(folder: Path, **options: Any) -> tuple[Path, PolicyWatcher]:
    """A good fallback.yaml in ``folder``, and a watcher of it."""
    policy = folder / "fallback.yaml"
    policy.write_text(_policy("good", access=True))
    return policy, PolicyWatcher(policy, **options)


def _append_log(folder: Path, lines: int) -> None:
    with (folder / "app.log").open("a") as log:
        for line in range(lines):
            log.write(f"GET /health 200 ({line})\n")
            log.flush()  # a write event each


def test_a_log_written_beside_a_broken_policy_logs_one_rejection(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="stigg_cache")
    policy, watching = _watched(tmp_path)
    try:
        policy.write_text(BROKEN)
        eventually(lambda: watching.rejected >= 1)
        _append_log(tmp_path, LOG_LINES)
        editor = tmp_path / "editor"  # the same broken text saved again, by a rename
        editor.mkdir()
        (editor / "fallback.yaml").write_text(BROKEN)
        rejected = watching.rejected
        (editor / "fallback.yaml").replace(policy)
        eventually(lambda: watching.rejected > rejected)  # read again, rejected again
    finally:
        watching.close()
    (line,) = _rejections(caplog)
    assert line.startswith(f"stigg_cache.policy_rejected: invalid fallback policy:\n  {policy}")
    assert "not valid YAML" in line
    levels = {r.levelno for r in caplog.records if getattr(r, "event", "").endswith("rejected")}
    assert levels == {logging.ERROR}
    assert watching.current.rules[0].name == "good"


def test_a_rejection_that_stands_is_logged_again_once_an_interval(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="stigg_cache")
    policy, watching = _watched(tmp_path, log_interval_s=0.3)
    try:
        policy.write_text(BROKEN)
        eventually(lambda: len(_rejections(caplog)) >= 2)
        first, second = _rejections(caplog)[:2]
        assert second == first.replace("policy_rejected: ", "policy_rejected: still, ", 1)
        reads = watching.reads
        policy.write_text(_policy("fixed", access=False))
        assert _applied(watching, "fixed") < 1.0
        assert watching.reads > reads
        assert watching._until_reminder() is None  # nothing stands: no more reminders
    finally:
        watching.close()


def test_events_beside_the_policy_never_wake_the_watcher(tmp_path: Path) -> None:
    """watchdog delivers a folder's events in order: once the policy's own write has been
    seen, every write of the log before it has been seen too, and woke nothing."""
    policy = tmp_path / "fallback.yaml"
    policy.write_text(_policy("good", access=True))
    seen: list[FileSystemEvent] = []
    kicks: list[int] = []

    class Recording(_PolicyEvents):
        def on_any_event(self, event: FileSystemEvent) -> None:
            seen.append(event)
            super().on_any_event(event)

    observer = Observer()
    paths = links_of(policy)
    observer.schedule(Recording(lambda: kicks.append(len(seen)), lambda: paths), str(tmp_path))
    observer.start()
    try:
        _append_log(tmp_path, LOG_LINES)
        (tmp_path / "cache.db").write_bytes(b"a store beside it")
        policy.write_text(_policy("next", access=True))
        eventually(lambda: bool(kicks))
    finally:
        observer.stop()
        observer.join(timeout=5)
    first_policy_event = next(
        n
        for n, e in enumerate(seen)
        if os.fsdecode(e.src_path) == str(policy) and e.event_type in {"created", "modified"}
    )
    log = str(tmp_path / "app.log")
    log_events = [e for e in seen[:first_policy_event] if os.fsdecode(e.src_path) == log]
    # delivered before the policy's (inotify merges a burst of writes to one file)
    assert {"created", "modified"} <= {e.event_type for e in log_events}
    assert kicks
    assert min(kicks) == first_policy_event + 1  # the first wake-up is the policy's event


def test_a_policy_linked_from_another_folder_reloads_when_its_target_is_edited(
    tmp_path: Path,
) -> None:
    config = tmp_path / "etc"
    config.mkdir()
    target = config / "fallback.yaml"
    target.write_text(_policy("v1", access=True))
    app = tmp_path / "app"
    app.mkdir()
    (app / "fallback.yaml").symlink_to(target)
    watching = PolicyWatcher(app / "fallback.yaml")
    try:
        target.write_text(_policy("v2", access=False))  # in place, in the other folder
        assert _applied(watching, "v2") < 1.0
    finally:
        watching.close()


def test_a_file_that_cannot_be_read_says_what_the_os_said(tmp_path: Path) -> None:
    policy, watching = _watched(tmp_path)
    try:
        policy.unlink()
        policy.mkdir()  # unreadable as a file, even for root
        eventually(lambda: watching.error is not None)
        assert f"cannot read {policy}: Is a directory (EISDIR)" in (watching.error or "")
        assert watching.current.rules[0].name == "good"
    finally:
        watching.close()


def test_a_watcher_of_a_missing_file_says_why_it_cannot_start(tmp_path: Path) -> None:
    from stigg_cache.errors import PolicyError

    with pytest.raises(PolicyError, match=r"cannot read it: No such file or directory \(ENOENT\)"):
        PolicyWatcher(tmp_path / "absent.yaml")


def test_the_links_of_a_kubernetes_mount_are_the_policys_paths(tmp_path: Path) -> None:
    mount = tmp_path / "configmap"
    (mount / "..2026_01").mkdir(parents=True)
    (mount / "..2026_01" / "fallback.yaml").write_text("version: 1\n")
    (mount / "..data").symlink_to("..2026_01")
    (mount / "fallback.yaml").symlink_to("..data/fallback.yaml")
    assert links_of(mount / "fallback.yaml") == {
        str(mount / "fallback.yaml"),
        str(mount / "..data"),
        str(mount / "..data" / "fallback.yaml"),
        str(mount / "..2026_01" / "fallback.yaml"),
    }


def test_closing_while_a_reminder_is_due_stops_at_once(tmp_path: Path) -> None:
    policy, watching = _watched(tmp_path, log_interval_s=3600)
    policy.write_text(BROKEN)
    eventually(lambda: watching.rejected >= 1)
    closed = threading.Thread(target=watching.close)
    closed.start()
    closed.join(timeout=5)
    assert not closed.is_alive()
    assert watching._worker is not None
    assert not watching._worker.is_alive()


def test_a_folder_written_to_without_pause_never_makes_the_policy_look_missing(
    tmp_path: Path,
) -> None:
    """The store and outbox beside fallback.yaml write all the time under load: the policy's
    edit is applied, never reported missing because the folder is never quiet."""
    policy, watching = _watched(tmp_path, settle_s=0.02)
    stop = threading.Event()

    def churn() -> None:
        written = 0
        while not stop.is_set():
            (tmp_path / "cache.db").write_text(str(written))
            written += 1

    writer = threading.Thread(target=churn)
    writer.start()
    try:
        policy.write_text(_policy("second", access=False))
        eventually(lambda: watching.reloads > 0 or watching.rejected > 0)
    finally:
        stop.set()
        writer.join()
        watching.close()
    assert (watching.reloads, watching.rejected, watching.error) == (1, 0, None)
    assert watching.current.rules[0].name == "second"  # was "good"
