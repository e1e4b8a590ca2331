"""The documentation's blocks for this venv's SDK run as written: those whose first line is
``# pip install 'stigg-cache[EXTRA]'`` for this family's extra. The runner, its fixtures and
its placeholders are ``tests/test_doc_examples.py``'s (which runs the REST SDK's blocks, so
the ``rest`` family does not collect this file)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pytest_examples import CodeExample

from tests.clients.conftest import family
from tests.test_doc_examples import (
    example_id,
    examples_for,
    fake_for_docs,
    reader_dir,
    run_example,
    sdk_family,
)

__all__ = ["fake_for_docs", "reader_dir"]  # the runner's fixtures, used here by name
SDK_BLOCKS = [e for e in examples_for(family()) if sdk_family(e) == family()]


def test_this_sdk_has_documented_blocks() -> None:
    assert SDK_BLOCKS, f"no documentation block names the {family()} SDK's extra"


@pytest.mark.parametrize("example", SDK_BLOCKS, ids=example_id)
def test_doc_block_for_this_sdk_runs_as_written(example: CodeExample, reader_dir: Path) -> None:
    run_example(example, reader_dir)
