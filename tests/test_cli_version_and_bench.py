"""``stigg-cache --version``, and ``stigg-cache bench`` without the SDKs it compares against:
through click's runner and as the installed command."""

from __future__ import annotations

import importlib.metadata
import os
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from stigg_cache.cli import main
from tests.helpers import run_installed

VERSION = importlib.metadata.version("stigg-cache")
BENCH_EXTRA = "pip install 'stigg-cache[bench]'"


def test_version_prints_the_installed_version(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert result.output == f"stigg-cache, version {VERSION}\n"
    installed = run_installed("--version", cwd=tmp_path)
    assert (installed.returncode, installed.stdout) == (0, result.output)


def test_bench_without_launchdarklys_sdk_names_the_extra_and_runs_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "ldclient", None)  # as if never installed
    out = tmp_path / "results.json"
    result = CliRunner().invoke(main, ["bench", "--tiny", "--out", str(out)])
    assert result.exit_code == 2
    assert BENCH_EXTRA in result.output
    assert "LaunchDarkly's SDK, row 2" in result.output
    assert "ModuleNotFoundError" not in result.output
    assert not out.exists()


def test_the_installed_bench_without_the_extra_says_which_to_install(tmp_path: Path) -> None:
    """The environment hides ``ldclient`` from the command (a ``sitecustomize`` on its path)."""
    hider = tmp_path / "hide"
    hider.mkdir()
    (hider / "sitecustomize.py").write_text("import sys\nsys.modules['ldclient'] = None\n")
    path = os.pathsep.join(filter(None, [str(hider), os.environ.get("PYTHONPATH")]))
    result = run_installed(
        "bench", "--tiny", "--out", str(tmp_path / "r.json"), cwd=tmp_path, PYTHONPATH=path
    )
    assert result.returncode == 2, result.stderr
    assert BENCH_EXTRA in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "r.json").exists()
