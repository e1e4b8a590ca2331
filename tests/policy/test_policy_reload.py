"""Hot reload of fallback.yaml as operators really edit it."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stigg_cache import FallbackPolicy, ResilientClient, Source
from stigg_cache.errors import PolicyError
from stigg_cache.policy.watcher import PolicyWatcher
from stigg_cache.testing.fake import FakeMode, FakeStigg
from tests.conftest import API_KEY
from tests.helpers import eventually

APPLY_WITHIN_S = 1.0  # the promise to operators

GRANT = "version: 1\nrules:\n  - name: {name}\n    match: {{customers: ['*']}}\n    grant: {{sso: {{has_access: {access}}}}}\n"


def _policy(name: str, access: bool) -> str:
    return GRANT.format(name=name, access=str(access).lower())


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    path = tmp_path / "fallback.yaml"
    path.write_text(_policy("first", access=True))
    return path


@pytest.fixture
def watcher(policy_file: Path) -> Iterator[PolicyWatcher]:
    watching = PolicyWatcher(policy_file)
    yield watching
    watching.close()


def _rule(watcher: PolicyWatcher) -> str | None:
    return watcher.current.resolve("c", None, "sso").rule


def _applied(watcher: PolicyWatcher, rule: str) -> float:
    started = time.monotonic()
    eventually(lambda: _rule(watcher) == rule, within_s=5)
    return time.monotonic() - started


def test_in_place_edit_applies_within_a_second(watcher: PolicyWatcher, policy_file: Path) -> None:
    policy_file.write_text(_policy("second", access=False))
    assert _applied(watcher, "second") < APPLY_WITHIN_S
    assert watcher.reloads == 1


def test_editor_rename_over_save_applies(watcher: PolicyWatcher, policy_file: Path) -> None:
    temporary = policy_file.with_name(".fallback.yaml.swp")
    temporary.write_text(_policy("renamed", access=True))
    temporary.replace(policy_file)
    assert _applied(watcher, "renamed") < APPLY_WITHIN_S


def test_delete_then_recreate_keeps_the_old_policy_meanwhile(
    watcher: PolicyWatcher, policy_file: Path
) -> None:
    first_version = watcher.current.version
    policy_file.unlink()
    eventually(lambda: watcher.error is not None, within_s=APPLY_WITHIN_S)
    assert "No such file or directory (ENOENT)" in (watcher.error or "")
    assert watcher.current.version == first_version
    policy_file.write_text(_policy("recreated", access=True))
    assert _applied(watcher, "recreated") < APPLY_WITHIN_S
    assert watcher.error is None


def test_kubernetes_symlink_swap_applies(tmp_path: Path) -> None:
    mount = tmp_path / "configmap"
    mount.mkdir()
    (mount / "..2026_01").mkdir()
    (mount / "..2026_01" / "fallback.yaml").write_text(_policy("v1", access=True))
    (mount / "..data").symlink_to("..2026_01")
    (mount / "fallback.yaml").symlink_to("..data/fallback.yaml")
    watching = PolicyWatcher(mount / "fallback.yaml")
    try:
        (mount / "..2026_02").mkdir()
        (mount / "..2026_02" / "fallback.yaml").write_text(_policy("v2", access=False))
        (mount / "..data_tmp").symlink_to("..2026_02")
        (mount / "..data_tmp").rename(mount / "..data")  # the atomic swap kubelet does
        assert _applied(watching, "v2") < APPLY_WITHIN_S
    finally:
        watching.close()


def test_invalid_edit_is_rejected_and_the_old_policy_keeps_answering(
    watcher: PolicyWatcher, policy_file: Path
) -> None:
    policy_file.write_text("version: 1\nrules: [oops\n")
    eventually(lambda: watcher.error is not None)
    assert "not valid YAML" in (watcher.error or "")
    assert _rule(watcher) == "first"
    assert watcher.rejected >= 1
    policy_file.write_text(_policy("fixed", access=True))
    assert _applied(watcher, "fixed") < APPLY_WITHIN_S
    assert watcher.error is None


def test_half_written_file_is_not_validated_mid_write(
    watcher: PolicyWatcher, policy_file: Path
) -> None:
    final = _policy("complete", access=True) + "# " + "x" * 2000 + "\n"
    cut = final.index("grant")  # this prefix parses, but names a rule with no grant
    with policy_file.open("w") as handle:
        handle.write(final[:cut])
        handle.flush()
        time.sleep(0.03)  # an editor pausing mid-save, shorter than the settle time
        handle.write(final[cut:])
    assert _applied(watcher, "complete") < APPLY_WITHIN_S
    assert watcher.rejected == 0


def test_an_idle_watcher_stays_idle(watcher: PolicyWatcher, policy_file: Path) -> None:
    policy_file.write_text(_policy("once", access=True))
    _applied(watcher, "once")
    reads_before = watcher.reloads + watcher.rejected
    time.sleep(1.0)  # our own reads produce open/close events: they must not trigger reloads
    assert watcher.reloads + watcher.rejected == reads_before == 1
    assert not watcher._wake.is_set()


def test_client_decisions_carry_rule_and_version_and_follow_edits(
    policy_file: Path, tmp_path: Path
) -> None:
    with FakeStigg(api_key=API_KEY) as fake:
        fake.set_mode(FakeMode.DOWN)
        with ResilientClient(
            None,
            api_key=API_KEY,
            base_url=fake.url,
            store="memory://",
            policy=policy_file,
            check_timeout=0.1,
        ) as client:
            before = client.get_boolean_entitlement(customer_id="c", feature_id="sso")
            assert (before.decision.source, before.decision.rule, before.has_access) == (
                Source.POLICY,
                "first",
                True,
            )
            assert before.decision.policy_version == client.status().policy_version
            policy_file.write_text(_policy("second", access=False))
            eventually(lambda: client.status().policy_version != before.decision.policy_version)
            after = client.get_boolean_entitlement(customer_id="c", feature_id="sso")
            assert (after.decision.rule, after.has_access) == ("second", False)
            policy_file.write_text("version: one\n")
            eventually(lambda: client.status().policy_error is not None)
            still = client.get_boolean_entitlement(customer_id="c", feature_id="sso")
            assert (still.decision.rule, still.decision.policy_version) == (
                "second",
                after.decision.policy_version,
            )
    del tmp_path


def test_policy_writable_by_others_is_warned_about(
    policy_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    policy_file.chmod(0o666)
    PolicyWatcher(policy_file).close()
    assert "is writable by group or others" in caplog.text


@pytest.mark.skipif(os.getuid() != 0 and os.environ.get("CI") != "true", reason="chown: root")
@pytest.mark.parametrize("case", ["foreign file", "foreign folder", "open folder", "link target"])
def test_a_policy_another_user_could_swap_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, case: str
) -> None:
    folder = tmp_path / "conf"
    folder.mkdir(mode=0o700)
    policy = folder / "fallback.yaml"
    policy.write_text(_policy("first", access=True))
    policy.chmod(0o600)
    watched = policy
    if case == "foreign file":
        os.chown(policy, 4242, 4242)  # 0644 as another user left it: mode bits look fine
    elif case == "foreign folder":
        os.chown(folder, 4242, 4242)
    elif case == "open folder":
        folder.chmod(0o777)  # another user renames a file of theirs over it
    else:
        os.chown(policy, 4242, 4242)
        watched = tmp_path / "link.yaml"
        watched.symlink_to(policy)
    PolicyWatcher(watched).close()
    assert "can be changed by other users" in caplog.text


def test_a_private_policy_is_not_warned_about(
    policy_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    policy_file.chmod(0o600)
    PolicyWatcher(policy_file).close()
    assert "policy_writable" not in caplog.text


def test_closing_a_watcher_in_a_busy_folder_logs_no_error(
    policy_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The store and outbox often live beside fallback.yaml: their writes are events there."""
    stop = threading.Event()

    def churn() -> None:
        written = 0
        while not stop.is_set():
            (policy_file.parent / "busy.db").write_text(str(written))
            written += 1

    writer = threading.Thread(target=churn)
    writer.start()
    try:
        with caplog.at_level(logging.ERROR, logger="watchdog"):
            for _ in range(300):  # watchdog's stop race showed in ~1 close in 13
                watching = PolicyWatcher(policy_file)
                time.sleep(0.002)
                watching.close()
    finally:
        stop.set()
        writer.join()
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


HUGE = "1" + "0" * 400  # a YAML int no float holds


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            (
                f"version: 1\nrules:\n  - name: big\n    match: {{customers: ['*']}}\n"
                f"    grant: {{api_calls: {{usage_limit: {HUGE}}}}}\n"
            ),
            "expected a number >= 0, got a 1329-bit integer",
        ),
        (f"version: 1\nstaleness: {{fresh_for: {HUGE}d}}\n", "at most 3650d"),
    ],
    ids=["huge usage_limit", "endless duration"],
)
def test_numbers_beyond_reason_are_validation_errors(text: str, message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        FallbackPolicy.from_yaml(text.encode(), "fallback.yaml")


def test_hot_reload_survives_any_failure_of_a_load_and_applies_the_next_edit(
    watcher: PolicyWatcher, policy_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(content: bytes, source: str) -> Any:
        raise OverflowError("a loader bug")

    monkeypatch.setattr(FallbackPolicy, "from_yaml", broken)
    policy_file.write_text(_policy("second", access=False))
    eventually(lambda: watcher.error is not None, within_s=5)
    assert "a loader bug" in (watcher.error or "")
    monkeypatch.undo()
    policy_file.write_text(_policy("third", access=False))
    _applied(watcher, "third")
    assert watcher.error is None
