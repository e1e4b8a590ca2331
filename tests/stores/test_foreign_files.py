"""Store and outbox files another user could read or swap are refused, not adopted (#16).

The tests run as whoever runs them; "another user" is a uid nobody has (root can give
files to it, as an attacker with a local account would own theirs).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from stigg_cache import ConfigurationError, ResilientClient
from stigg_cache.outbox.sqlite import SqliteOutbox
from stigg_cache.stores.sqlite import SqliteStore
from stigg_cache.testing.fake import FakeStigg
from tests.helpers import client_on

STRANGER = 4242

needs_root = pytest.mark.skipif(  # chown to another uid needs root; CI runs as root
    os.getuid() != 0 and os.environ.get("CI") != "true", reason="chown needs root"
)


def _planted(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    path.chmod(0o666)
    os.chown(path, STRANGER, STRANGER)
    return path


@needs_root
@pytest.mark.parametrize("name", ["cache.db", "cache-outbox.db", "cache.db-wal"])
def test_a_file_another_user_created_first_is_refused_naming_it(
    fake: FakeStigg, tmp_path: Path, name: str
) -> None:
    planted = _planted(tmp_path / name)
    with pytest.raises(ConfigurationError, match=f"{planted}.*another user"):
        client_on(fake, tmp_path)


@needs_root
def test_a_folder_another_user_owns_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "theirs"
    folder.mkdir()
    os.chown(folder, STRANGER, STRANGER)
    with pytest.raises(ConfigurationError, match="another user"):
        SqliteStore(folder / "cache.db")


def test_a_folder_anyone_can_write_needs_the_sticky_bit(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(ConfigurationError, match="written by other users"):
        SqliteOutbox(shared / "outbox.db")
    shared.chmod(0o1777)  # as /tmp: others cannot replace what is ours
    SqliteOutbox(shared / "outbox.db").close()


def test_our_own_files_are_used_and_kept_private(fake: FakeStigg, tmp_path: Path) -> None:
    (tmp_path / "cache.db").write_bytes(b"")
    (tmp_path / "cache.db").chmod(0o644)
    client: ResilientClient = client_on(fake, tmp_path)
    assert (tmp_path / "cache.db").stat().st_mode & 0o777 == 0o600
    client.close()
