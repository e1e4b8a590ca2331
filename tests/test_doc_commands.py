"""Every command a shell block of the README or docs/ shows is one the project has, and
every policy a YAML block shows (one with ``version: 1``) is valid.

A ``stigg-cache ...`` line is parsed by the CLI itself (click), subcommand by subcommand,
with its optional parts (``[--customer acme]``) given: an unknown command, option or choice,
or a missing argument fails. A ``make X`` line needs the target in the Makefile, and
``pip install`` of a path or an extra needs that path and extra. Nothing is run.
"""

from __future__ import annotations

import re
import shlex
import shutil
import tomllib
from pathlib import Path

import click
import pytest

from stigg_cache.cli import main
from stigg_cache.policy.loader import load_policy

ROOT = Path(__file__).resolve().parent.parent
DOC_FILES = (
    ROOT / "README.md",
    ROOT / "stores" / "redis" / "README.md",
    *sorted((ROOT / "docs").glob("*.md")),
)
SHELL_BLOCK = re.compile(r"^```(?:sh|bash|console)\n(.*?)^```", re.MULTILINE | re.DOTALL)
ENV_ASSIGNMENT = re.compile(r"^(?:export )?[A-Z_]+=\S+\s+")
COMMENT = re.compile(r"\s+#.*$")
POLICY_BLOCK = re.compile(r"^```yaml\n(version: 1\n.*?)^```", re.MULTILINE | re.DOTALL)
OPTIONAL = re.compile(r"\[([^\[\]]*)\]")  # [--store URL]: the optional part, given


def command_lines() -> list[tuple[str, str]]:
    """(where, command) for each command line of every shell block."""
    found = []
    for path in DOC_FILES:
        text = path.read_text(encoding="utf-8")
        for block in SHELL_BLOCK.finditer(text):
            first = text[: block.start()].count("\n") + 2
            for offset, line in enumerate(block.group(1).splitlines()):
                command = COMMENT.sub("", line).strip()
                if command and not command.startswith("#"):
                    found.append((f"{path.name}:{first + offset}", command))
    return found


LINES = command_lines()


def parse_cli(args: list[str]) -> None:
    """Parse ``args`` as click would run them, down to the last subcommand; invoke nothing."""
    command: click.Command = main
    context = command.make_context("stigg-cache", args)
    while isinstance(command, click.Group) and (left := [*context._protected_args, *context.args]):
        name, sub, rest = command.resolve_command(context, left)
        assert sub is not None, f"no command {name!r}"
        command, context = sub, sub.make_context(name or "", rest, parent=context)


@pytest.fixture
def reader_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The files a reader's commands name, so that click's existence checks hold."""
    shutil.copy(ROOT / "examples" / "fallback.yaml", tmp_path / "fallback.yaml")
    for name in ("customers.yaml", "my-scenario.yaml"):
        (tmp_path / name).write_text("", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    return tmp_path


CLI_LINES = [
    (where, ENV_ASSIGNMENT.sub("", command))
    for where, command in LINES
    if ENV_ASSIGNMENT.sub("", command).startswith("stigg-cache ")
]


@pytest.mark.parametrize(("where", "command"), CLI_LINES, ids=str)
def test_a_documented_cli_command_parses(where: str, command: str, reader_dir: Path) -> None:
    args = shlex.split(OPTIONAL.sub(r"\1", command).replace(" ...", ""))
    parse_cli(args[1:])


@pytest.mark.parametrize(
    ("where", "command"), [line for line in LINES if line[1].startswith("make ")]
)
def test_a_documented_make_target_exists(where: str, command: str) -> None:
    targets = set(re.findall(r"^([\w.-]+):", (ROOT / "Makefile").read_text(), re.MULTILINE))
    assert set(command.split()[1:]) <= targets, where


@pytest.mark.parametrize(
    ("where", "command"), [line for line in LINES if line[1].startswith("pip install")]
)
def test_a_documented_install_names_what_exists(where: str, command: str) -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    for requirement in shlex.split(command)[2:]:
        name, _, extra = requirement.partition("[")
        if name.startswith("."):
            assert (ROOT / name).is_dir(), f"{where}: no {name}"
        assert {e for e in extra.rstrip("]").split(",") if e} <= set(extras), where


def test_the_documented_commands_are_found() -> None:
    assert any("chaos run" in command for _, command in CLI_LINES)
    assert any(command.startswith("make ") for _, command in LINES)


POLICIES = [
    (f"{path.name}:{path.read_text(encoding='utf-8')[: block.start()].count(chr(10)) + 1}", block)
    for path in DOC_FILES
    for block in POLICY_BLOCK.finditer(path.read_text(encoding="utf-8"))
]


@pytest.mark.parametrize(("where", "block"), POLICIES, ids=[where for where, _ in POLICIES])
def test_a_documented_policy_is_valid(where: str, block: re.Match[str]) -> None:
    load_policy(block.group(1).encode(), where)


def test_the_documented_policies_are_found() -> None:
    assert {where.split(":")[0] for where, _ in POLICIES} >= {"README.md", "policy.md"}
