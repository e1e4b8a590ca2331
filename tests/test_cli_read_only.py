"""Commands that only look (inspect, outbox status and dead-letters, policy explain --store)
open stores read-only: they never create a file, a folder or a table, refuse a file of the
other kind, and say how to write an absolute URL. Through click's runner and as the
installed ``stigg-cache`` command."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from stigg_cache.cli import main
from stigg_cache.outbox import open_outbox
from stigg_cache.outbox.records import event_record
from stigg_cache.stores import open_store
from tests.helpers import run_installed
from tests.test_cli import EXAMPLE

RELATIVE = "sqlite:///var/lib/app/cache.db"  # the form the README once showed: ./var/lib/...
EXPLAIN = ["policy", "explain", str(EXAMPLE), "--customer", "acme", "--feature", "sso"]
LOOKING = [  # every command that only looks, with the option naming what it reads
    (["inspect"], "--store"),
    (["outbox", "status"], "--store"),
    (["outbox", "status"], "--outbox"),
    (["outbox", "dead-letters"], "--store"),
    (["outbox", "requeue"], "--store"),  # writes, but only to an outbox that is there
    (EXPLAIN, "--store"),
]


def _everything_under(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*"))


@pytest.mark.parametrize(("command", "option"), LOOKING)
def test_a_relative_url_naming_nothing_exits_2_suggests_the_absolute_form_and_creates_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: list[str], option: str
) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, [*command, option, RELATIVE])
    assert result.exit_code == 2, result.output
    assert f"{tmp_path}/var/lib/app/cache.db" in result.output
    assert "for /var/lib/app/cache.db write sqlite:////var/lib/app/cache.db" in result.output
    assert _everything_under(tmp_path) == []


@pytest.mark.parametrize(("command", "option"), LOOKING)
def test_the_installed_command_creates_nothing_either(
    tmp_path: Path, command: list[str], option: str
) -> None:
    result = run_installed(*command, option, RELATIVE, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "write sqlite:////var/lib/app/cache.db" in result.stderr
    assert result.stdout == ""
    assert _everything_under(tmp_path) == []


def test_a_missing_disk_store_is_refused_without_making_its_folder(tmp_path: Path) -> None:
    result = run_installed("inspect", "--store", "disk:///cache-dir", cwd=tmp_path)
    assert result.returncode == 2
    assert f"no disk store at {tmp_path}/cache-dir" in result.stderr
    assert "for /cache-dir write disk:////cache-dir" in result.stderr
    assert _everything_under(tmp_path) == []


@pytest.mark.parametrize("command", [["inspect"], ["outbox", "status"]])
def test_without_store_the_librarys_default_is_read_and_never_created(
    tmp_path: Path, command: list[str]
) -> None:
    result = run_installed(*command, cwd=tmp_path, STIGG_API_KEY="")
    assert result.returncode == 2
    assert f"{tmp_path}/user-cache/stigg-cache/default/stigg-cache" in result.stderr
    assert "choose one with --namespace" in result.stderr
    assert _everything_under(tmp_path) == []


def _tables(path: Path) -> set[str]:
    with sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True) as db:
        return {name for (name,) in db.execute("SELECT name FROM sqlite_master")}


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def both_kinds(tmp_path: Path) -> tuple[Path, Path]:
    """A snapshot store holding one entry and an outbox holding one event, as clients leave them."""
    store = open_store(f"sqlite:///{tmp_path}/cache.db")
    store.put("snapshot:x", b"value")
    store.close()
    box = open_outbox(f"sqlite:///{tmp_path}/cache-outbox.db")
    box.enqueue([event_record({"customer_id": "c", "event_name": "e"}, 1.0)], 1.0)
    box.close()
    return tmp_path / "cache.db", tmp_path / "cache-outbox.db"


@pytest.mark.parametrize("command", [["outbox", "status"], ["outbox", "dead-letters"]])
def test_outbox_commands_refuse_a_snapshot_store_and_add_no_table_to_it(
    both_kinds: tuple[Path, Path], command: list[str]
) -> None:
    store, outbox = both_kinds
    tables, digest = _tables(store), _digest(store)
    result = CliRunner().invoke(main, [*command, "--store", f"sqlite:///{store}"])
    assert result.exit_code == 2
    assert f"{store} is not an outbox: it holds a snapshot store" in result.output
    assert f"keeps its usage in {outbox}" in result.output
    assert (_tables(store), _digest(store)) == (tables, digest)


@pytest.mark.parametrize("command", [["inspect"], EXPLAIN])
def test_store_commands_refuse_an_outbox_and_add_no_table_to_it(
    both_kinds: tuple[Path, Path], command: list[str]
) -> None:
    _, outbox = both_kinds
    tables, digest = _tables(outbox), _digest(outbox)
    result = run_installed(*command, "--store", f"sqlite:///{outbox}", cwd=outbox.parent)
    assert result.returncode == 2
    assert f"{outbox} is not a snapshot store: it holds a usage outbox" in result.stderr
    assert (_tables(outbox), _digest(outbox)) == (tables, digest)


def test_looking_changes_no_byte_of_either_file(both_kinds: tuple[Path, Path]) -> None:
    store, outbox = both_kinds
    digests = (_digest(store), _digest(outbox))
    looks = [
        ["inspect", "--store", f"sqlite:///{store}"],
        [*EXPLAIN, "--store", f"sqlite:///{store}"],
        ["outbox", "status", "--outbox", f"sqlite:///{outbox}"],
        ["outbox", "dead-letters", "--outbox", f"sqlite:///{outbox}"],
    ]
    for args in looks:
        result = run_installed(*args, cwd=store.parent)
        assert result.returncode == 0, (args, result.stderr)
    assert "pending 1" in run_installed(*looks[2], cwd=store.parent).stdout
    assert (_digest(store), _digest(outbox)) == digests


def test_a_plugin_that_cannot_open_read_only_is_refused_not_trusted() -> None:
    from stigg_cache._support.plugins import opened
    from stigg_cache.errors import ConfigurationError

    def open_legacy(url: str) -> object:  # a third party's factory from before read_only
        raise AssertionError(f"{url} opened: it could have created or written anything")

    with pytest.raises(
        ConfigurationError, match=r"cannot open read-only \(its factory takes no"
    ) as raised:
        opened(open_legacy, "legacy://host/db?password=hunter2", read_only=True)
    assert "hunter2" not in str(raised.value)
