"""Every Python block of the README and of docs/ runs as written.

pytest-examples finds the blocks; each runs here compiled under its own file name and line
numbers (a failure points at ``README.md:LINE``), not through pytest-examples' runner, whose
rewritten tracebacks crash pytest's report on Python 3.11.

A block is a reader's copy-and-paste: it imports what it uses and runs at top level. What
a block cannot own is filled by fixtures, never by editing the block:

* Stigg is a fake on loopback (``STIGG_BASE_URL`` points the SDKs at it); it accepts the
  placeholder key ``"..."``, the key every block writes.
* The working directory is a temporary one holding ``fallback.yaml`` (``examples/``'s),
  and the user's cache directory (the default store and outbox) is in it too.
* ``client``, where a block uses one it did not build (it says ``# client: your
  ResilientClient``), is a :class:`ResilientClient` over
  the fake, as the block before it built.
* ``PLACEHOLDERS`` below: paths and hosts of a reader's machine, each swapped for the
  fixture's (every one must still be used by some block: ``test_every_placeholder_is_used``).

A block that defines tests (``def test_...``, ``class Test...``) is a test file: it runs
under pytest in a subprocess, with the package's pytest plugin (``fake_stigg``,
``fault_proxy``). A block whose first line is ``# pip install 'stigg-cache[EXTRA]'``
needs that SDK: this venv (the REST SDK's) runs the ``[rest]`` ones, and each other
family's venv its own (``tests/clients/test_doc_examples.py``, in ``make sdk-tests``).
Every block is checked for undefined names here. Clients a block leaves open are
closed after it, as the application's exit would.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pytest_examples import CodeExample, find_examples

from stigg_cache import AsyncResilientClient, ResilientClient
from stigg_cache.testing.fake import FakeStigg, boolean, metered, numeric

ROOT = Path(__file__).resolve().parent.parent
DOC_FILES = (
    ROOT / "README.md",
    ROOT / "stores" / "redis" / "README.md",
    *sorted((ROOT / "docs").glob("*.md")),
)
PLACEHOLDER_KEY = "..."  # the API key every block writes; the fake accepts it
SDK_LINE = re.compile(r"^# pip install 'stigg-cache\[([\w-]+)\]'")
# The SDK extra a block names -> the family whose venv has that SDK (tests/clients/conftest.py).
FAMILY_OF_EXTRA = {"rest": "rest", "graphql": "graphql-v1", "graphql-v2": "graphql-v2"}
FAMILY_OF_EXTRA["sidecar"] = "sidecar"
DEFINES_TESTS = re.compile(r"^(def test_|async def test_|class Test)", re.MULTILINE)
RUFF = str(Path(sys.executable).with_name("ruff"))
REDIS_URL = os.environ.get("STIGG_CACHE_REDIS_URL", "redis://127.0.0.1:6379/0")
# A reader's paths and hosts -> the fixture's ({tmp}: the block's directory; {port}: a free
# loopback port; {redis}: the test Redis, a namespace of the test's own).
PLACEHOLDERS = {
    "/var/lib/app/": "{tmp}/",
    "redis://:password@redis.internal:6379/0?namespace=prod": "{redis}",
    "redis://127.0.0.1:6379/0?namespace=prod": "{redis}",
    "start_http_server(9464,": "start_http_server({port},",
}


def sdk_family(example: CodeExample) -> str | None:
    """The SDK family a block needs (its first line names the extra), or None for any."""
    match = SDK_LINE.match(example.source)
    return None if match is None else FAMILY_OF_EXTRA[match.group(1)]


def examples_for(family: str) -> list[CodeExample]:
    """The blocks this SDK family's venv runs: its own, and (for ``rest``) those needing none."""
    found = [e for e in find_examples(*DOC_FILES) if e.prefix.split()[0] in ("py", "python")]
    return [e for e in found if sdk_family(e) in (family, None if family == "rest" else family)]


def example_id(example: CodeExample) -> str:
    return f"{example.path.name}:{example.start_line}"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


REDIS_NAMESPACES: list[str] = []  # those the blocks were given: their keys go after the test


def filled(source: str, tmp: Path) -> str:
    """The block with each placeholder swapped for the fixture's value."""
    namespace = f"docs-{uuid.uuid4().hex[:12]}"
    values = {
        "tmp": str(tmp),
        "port": str(free_port()),
        "redis": f"{REDIS_URL}?namespace={namespace}",
    }
    for placeholder, value in PLACEHOLDERS.items():
        if placeholder in source and "{redis}" in value:
            REDIS_NAMESPACES.append(namespace)
        source = source.replace(placeholder, value.format(**values))
    return source


def drop_redis_namespaces() -> None:
    """Delete the keys of the namespaces a block used (the test Redis is shared)."""
    if not REDIS_NAMESPACES:
        return
    import redis  # only where a block used Redis (not in every SDK venv)

    with redis.Redis.from_url(REDIS_URL) as server:
        while REDIS_NAMESPACES:
            pattern = f"{{stigg-cache:{REDIS_NAMESPACES.pop()}}}:*"
            for key in list(server.scan_iter(match=pattern, count=1000)):
                server.delete(key)


@pytest.fixture
def fake_for_docs() -> Iterator[FakeStigg]:
    """The Stigg every block talks to: the customers and features the blocks name."""
    with FakeStigg(api_key=PLACEHOLDER_KEY) as fake:
        features = [
            boolean("sso"),
            numeric("seats", 25),
            metered("api_calls", limit=1000, usage=0),
        ]
        for customer_id in ("c-1", "acme"):
            fake.set_customer(customer_id, features)
        yield fake


@pytest.fixture
def reader_dir(
    tmp_path: Path, fake_for_docs: FakeStigg, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    """A reader's working directory: fallback.yaml in it, Stigg (and the cache dir) ours."""
    shutil.copy(ROOT / "examples" / "fallback.yaml", tmp_path / "fallback.yaml")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("STIGG_BASE_URL", fake_for_docs.url)
    monkeypatch.setenv("STIGG_API_KEY", PLACEHOLDER_KEY)
    monkeypatch.setenv("STIGG_CACHE_SIGNING_KEY", "docs-example-signing-key-0123456789")
    monkeypatch.delenv("STIGG_CACHE_DIST", raising=False)
    yield tmp_path
    drop_redis_namespaces()


def run_block(example: CodeExample, tmp: Path) -> None:
    """Run one block in this process; close whatever clients it left open."""
    source = "\n" * (example.start_line) + filled(example.source, tmp)
    code = compile(source, str(example.path), "exec", dont_inherit=True)
    prepared = ResilientClient(None, store=f"sqlite:///{tmp}/prepared.db")
    names: dict[str, Any] = {"__name__": "doc_example", "client": prepared}
    try:
        exec(code, names)  # running the documentation's code is the point
    finally:
        prepared.close()
        for value in names.values():
            if isinstance(value, ResilientClient):
                value.close()
            elif isinstance(value, AsyncResilientClient):
                asyncio.run(value.aclose())


def run_test_block(example: CodeExample, tmp: Path) -> None:
    """Run a block that defines tests as a test file, under pytest with the package's plugin."""
    test_file = tmp / f"test_{example.path.stem.lower()}_{example.start_line}.py"
    test_file.write_text(filled(example.source, tmp), encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
         "-W", "error", str(test_file)],
        cwd=tmp, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert " passed" in result.stdout, result.stdout


def run_example(example: CodeExample, tmp: Path) -> None:
    if DEFINES_TESTS.search(example.source):
        run_test_block(example, tmp)
    else:
        run_block(example, tmp)


@pytest.mark.parametrize("example", examples_for("rest"), ids=example_id)
def test_doc_block_runs_as_written(example: CodeExample, reader_dir: Path) -> None:
    run_example(example, reader_dir)


@pytest.mark.parametrize("example", list(find_examples(*DOC_FILES)), ids=example_id)
def test_doc_block_names_only_what_it_imports_or_defines(example: CodeExample) -> None:
    """Pyflakes over every block, SDK blocks too: an undefined name in a branch the run never
    takes (an exception class nobody imported) fails here."""
    source = "\n" * (example.start_line) + example.source
    result = subprocess.run(
        [RUFF, "check", "--quiet", "--no-cache", "--isolated", "--select", "F821,F822,F823",
         "--config", "builtins = ['client']", "--stdin-filename", f"{example.path}.py", "-"],
        input=source, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_placeholder_is_used() -> None:
    sources = [e.source for e in find_examples(*DOC_FILES)]
    unused = [p for p in PLACEHOLDERS if not any(p in source for source in sources)]
    assert unused == [], f"placeholders no block writes any more: {unused}"


def test_every_doc_file_is_searched() -> None:
    """Both READMEs and every page of the site: a page added to docs/ is covered at once."""
    assert {p.name for p in DOC_FILES} >= {"README.md", "index.md", "api.md"}
    assert [e for e in find_examples(ROOT / "README.md") if e.prefix.startswith("py")]
