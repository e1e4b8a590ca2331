"""The fuzz targets' invariants under hypothesis, bounded: every decoder ends in a value or its error.

The same functions run unbounded under atheris (``make fuzz``); here each gets
a few hundred examples from generic bytes and from structured inputs close to
what the decoder accepts, plus the seed corpora and inputs fuzzing once broke.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fuzz import properties
from fuzz.make_corpus import seeds
from stigg_cache.errors import PolicyError
from stigg_cache.outbox.records import EVENT_FIELDS, USAGE_FIELDS
from stigg_cache.policy import FallbackPolicy

CORPUS = Path(__file__).parent.parent / "fuzz" / "corpus"
BOUNDED = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TARGETS: dict[str, Callable[[bytes], None]] = {
    "policy": properties.policy_bytes,
    "snapshot": properties.snapshot_value,
    "rest": properties.rest_body,
    "state": properties.state_body,
    "usage": properties.usage_input,
    "store_entry": properties.stored_record,
    "outbox_row": properties.outbox_row,
}

json_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=True) | st.integers() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=20,
)


@st.composite
def _mutations(draw: st.DrawFn, seed: bytes) -> bytes:
    """A seed with a few bytes replaced, cut or inserted."""
    value = bytearray(seed)
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, max(len(value) - 1, 0)))
        match draw(st.sampled_from(["replace", "cut", "insert"])):
            case "replace" if value:
                value[at] = draw(st.integers(0, 255))
            case "cut":
                del value[at : at + draw(st.integers(1, 16))]
            case _:
                value[at:at] = draw(st.binary(min_size=1, max_size=8))
    return bytes(value)


@pytest.mark.parametrize("target", TARGETS)
@BOUNDED
@given(data=st.binary(max_size=2_000))
def test_any_bytes_end_in_a_value_or_the_documented_error(target: str, data: bytes) -> None:
    TARGETS[target](data)


@pytest.mark.parametrize("target", TARGETS)
def test_mutated_seeds_end_in_a_value_or_the_documented_error(target: str) -> None:
    for name, seed in seeds()[target].items():

        @BOUNDED
        @given(data=_mutations(seed))
        def mutated(data: bytes) -> None:
            TARGETS[target](data)

        mutated()
        TARGETS[target](seed)
        del name


@BOUNDED
@given(
    raw=st.dictionaries(
        st.sampled_from(sorted(EVENT_FIELDS | USAGE_FIELDS)),
        json_values,
        max_size=8,
    )
)
def test_usage_input_from_near_valid_dicts(raw: dict[str, object]) -> None:
    properties.usage_input(json.dumps(raw).encode())


@pytest.mark.parametrize(
    "path", sorted(CORPUS.rglob("*")), ids=lambda p: f"{p.parent.name}/{p.name}"
)
def test_every_corpus_file_holds(path: Path) -> None:
    if path.is_file():
        TARGETS[path.parent.name](path.read_bytes())


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"version: 1\n---\nversion: 1\n", "one document only"),  # once a ComposerError
        (b"version: 1\nnote: 2001-13-45\n", "unreadable value '2001-13-45'"),  # once a ValueError
        (b"\n= :", "unreadable value '='"),  # once a ConstructorError
    ],
)
def test_what_fuzzing_found_is_a_policy_error(content: bytes, message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        FallbackPolicy.from_yaml(content)
