"""No header value reaches a failure's message, whichever library refused it (#28).

Each exception here is the real one its library raises for a header holding a newline;
each quotes the value it refused, which is the API key when the key is the header.
"""

from __future__ import annotations

import http.client
from collections.abc import Callable

import httpx
import pytest
import requests

from stigg_cache.adapters._deadline import HTTPX_FAILURES
from stigg_cache.adapters.base import as_failure, described, failure_of, safe_text
from stigg_cache.errors import FailureKind
from stigg_cache.testing.fake import FakeStigg
from tests.conftest import API_KEY

SPOILT = f"{API_KEY}\n"


def _h11(url: str) -> Exception:
    """h11 looks at headers as it sends them: over a real connection (to the fake)."""
    with httpx.Client(transport=httpx.HTTPTransport(retries=0)) as client:
        try:
            client.get(url, headers={"X-API-KEY": SPOILT})
        except httpx.LocalProtocolError as error:
            return error
    raise AssertionError("h11 took the header")


def _requests(url: str) -> Exception:
    try:
        requests.Request("GET", url, headers={"X-API-KEY": SPOILT}).prepare()
    except requests.exceptions.InvalidHeader as error:
        return error
    raise AssertionError("requests took the header")


def _http_client(url: str) -> Exception:
    connection = http.client.HTTPConnection(url.removeprefix("http://"))
    connection.putrequest("GET", "/")
    try:
        connection.putheader("X-API-KEY", SPOILT)
    except ValueError as error:
        return error
    raise AssertionError("http.client took the header")


@pytest.mark.parametrize(
    "refusal", [_h11, _requests, _http_client], ids=["h11", "requests", "http.client"]
)
def test_a_refused_header_is_described_without_its_value(
    refusal: Callable[[str], Exception], fake: FakeStigg
) -> None:
    error = refusal(fake.url)
    assert API_KEY in str(error)  # what the library says: the reason for all this
    for text in (safe_text(error), described(error), str(as_failure(error))):
        assert API_KEY not in text
        assert "header" in text


def test_httpx_refusing_our_header_is_our_configuration_not_stigg_and_not_the_records(
    fake: FakeStigg,
) -> None:
    failure = failure_of(_h11(fake.url), HTTPX_FAILURES)
    assert failure is not None
    assert failure.kind is FailureKind.AUTH  # kept and paused, never dead-lettered
    assert not failure.trips_breaker
    assert API_KEY not in str(failure)
