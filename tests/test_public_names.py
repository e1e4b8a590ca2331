"""The tools (``cli``, ``chaos``, ``benchmarks``, ``demo``) use only what a user or a
plug-in author could: no private module, no private name of another module, no
``_``-prefixed attribute of another object. The import-linter contract in pyproject.toml
sees modules; these tests see names and attributes, and keep that contract complete."""

from __future__ import annotations

import ast
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "stigg_cache"
TOOLS = (
    "stigg_cache.cli",
    "stigg_cache.chaos",
    "stigg_cache.benchmarks",
    "stigg_cache.demo",
    "stigg_cache.metrics",
)
# Underscored names the standard library means as public.
PUBLIC_ANYWAY = frozenset({"os._exit"})
CONTRACT = "The tools and metrics use public names only"


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _module_of(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _files(module: str) -> list[Path]:
    path = ROOT / module.replace(".", "/")
    return sorted(path.rglob("*.py")) if path.is_dir() else [path.with_suffix(".py")]


def _reaches(tree: ast.AST, own: str) -> Iterator[tuple[int, str]]:
    """Each private attribute of another object, and each private module or name imported
    from outside ``own`` (the tool's own package may keep private helpers)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            text = ast.unparse(node)
            is_self = isinstance(node.value, ast.Name) and node.value.id in {"self", "cls"}
            if not is_self and text not in PUBLIC_ANYWAY:
                yield node.lineno, text
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == own or node.module.startswith(f"{own}."):
                continue
            names = [alias.name for alias in node.names]
            if any(map(_private, node.module.split("."))) or any(map(_private, names)):
                yield node.lineno, f"from {node.module} import {', '.join(names)}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if any(map(_private, alias.name.split("."))):
                    yield node.lineno, f"import {alias.name}"


@pytest.mark.parametrize(
    ("source", "found"),
    [
        ("client._cache.l1", ["client._cache"]),
        ("runtime_of(client)._usage.flusher", ["runtime_of(client)._usage"]),
        ("self._cache; cls._made; other.__dict__; os._exit(0)", []),
        ("from stigg_cache._support.clock import SYSTEM_CLOCK", ["from stigg_cache._support"]),
        ("from stigg_cache.stores._codec import snapshot_key", ["from stigg_cache.stores._codec"]),
        ("from stigg_cache.client import _helper", ["from stigg_cache.client import _helper"]),
        ("import stigg_cache._runtime", ["import stigg_cache._runtime"]),
        ("from stigg_cache.benchmarks._common import _row", []),  # the tool's own helpers
        ("from stigg_cache.stores import snapshot_key", []),
    ],
)
def test_what_counts_as_reaching_in(source: str, found: list[str]) -> None:
    reached = [text for _, text in _reaches(ast.parse(source), "stigg_cache.benchmarks")]
    assert len(reached) == len(found)
    assert all(text.startswith(start) for text, start in zip(reached, found, strict=True))


@pytest.mark.parametrize("tool", TOOLS)
def test_a_tool_uses_public_names_only(tool: str) -> None:
    reached = [
        f"{path.relative_to(ROOT)}:{line}: {text}"
        for path in _files(tool)
        for line, text in _reaches(ast.parse(path.read_text(), str(path)), tool)
    ]
    assert reached == []


def _contract() -> dict[str, object]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    contracts = config["tool"]["importlinter"]["contracts"]
    (found,) = [c for c in contracts if str(c["name"]).startswith(CONTRACT)]
    return dict(found)


def test_the_import_contract_holds_every_tool_and_names_every_private_module() -> None:
    contract = _contract()
    sources = contract["source_modules"]
    forbidden = contract["forbidden_modules"]
    assert isinstance(sources, list)
    assert isinstance(forbidden, list)
    assert set(TOOLS) <= set(sources)
    assert contract.get("allow_indirect_imports") is True  # a public face may import them
    private = {
        module
        for path in PACKAGE.rglob("*.py")
        if any(map(_private, (module := _module_of(path)).split(".")))
    }
    unnamed = sorted(
        module
        for module in private
        if not any(module == f or module.startswith(f"{f}.") for f in forbidden)
        and not any(module.startswith(f"{s}.") for s in sources)  # a tool's own helpers
    )
    assert unnamed == []
