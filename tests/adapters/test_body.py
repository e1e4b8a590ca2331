"""The one rule for an answer's bytes: decoded, at most MAX_RESPONSE_BYTES, whole (#28)."""

from __future__ import annotations

import gzip
import tracemalloc
import zlib

import pytest

from stigg_cache.adapters._body import BLOCK_BYTES, read_whole
from stigg_cache.adapters.base import MAX_RESPONSE_BYTES
from stigg_cache.errors import FailureKind, StiggUnavailableError
from stigg_cache.testing.fake import BOMB_DECODED_BYTES, bomb

ANSWER = b'{"data": {"entitlements": []}}'


def _pieces(data: bytes, size: int = 7) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


@pytest.mark.parametrize(
    ("encoding", "sent"),
    [
        (None, ANSWER),
        ("identity", ANSWER),
        ("gzip", gzip.compress(ANSWER)),
        ("GZip ", gzip.compress(ANSWER)),
        ("x-gzip", gzip.compress(ANSWER)),
        ("gzip, gzip", gzip.compress(gzip.compress(ANSWER))),
        ("gzip, identity", gzip.compress(ANSWER)),
    ],
)
def test_an_answer_in_a_coding_asked_for_is_decoded_in_any_pieces(
    encoding: str | None, sent: bytes
) -> None:
    assert read_whole(_pieces(sent), None, encoding) == ANSWER
    assert read_whole([sent], None, encoding) == ANSWER


@pytest.mark.parametrize(
    ("encoding", "sent", "why"),
    [
        ("br", b"\x1b\x00", "not asked for"),
        ("deflate", zlib.compress(ANSWER), "not asked for"),
        ("gzip, zstd", b"(\xb5/\xfd", "not asked for"),
        ("gzip, gzip, gzip", gzip.compress(gzip.compress(gzip.compress(ANSWER))), "3 times"),
        ("gzip", gzip.compress(ANSWER)[:-9], "cut short"),
        ("gzip", b"not gzip at all", "not valid gzip"),
        ("gzip, gzip", bomb(), "once decoded"),
        (None, b" " * (MAX_RESPONSE_BYTES + 1), f"exceeds {MAX_RESPONSE_BYTES}"),
    ],
    ids=["br", "deflate", "zstd", "three layers", "truncated", "damaged", "bomb", "too long"],
)
def test_an_answer_we_cannot_take_whole_is_no_answer(
    encoding: str | None, sent: bytes, why: str
) -> None:
    with pytest.raises(StiggUnavailableError, match=why) as refused:
        read_whole(_pieces(sent, 65_536), None, encoding)
    assert refused.value.kind is FailureKind.INVALID_RESPONSE


def test_a_bomb_costs_the_cap_and_one_block_whatever_its_size() -> None:
    bomb()
    tracemalloc.start()
    try:
        with pytest.raises(StiggUnavailableError):
            read_whole([bomb()], None, "gzip, gzip")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < MAX_RESPONSE_BYTES + 4 * BLOCK_BYTES + 1024 * 1024 < BOMB_DECODED_BYTES


def test_an_answer_past_its_deadline_is_a_timeout() -> None:
    with pytest.raises(StiggUnavailableError) as late:
        read_whole([ANSWER], 0.0)
    assert late.value.kind is FailureKind.TIMEOUT
