"""An adapter this package builds, closed while calls are under way (adapters/_closing.py):
the calls under way finish and then close it; a call begun after close() never reaches
Stigg; a close that fails is logged, never the failure of the call it follows. Over the
built-in REST adapter and the fake Stigg on loopback."""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest

from stigg_cache.adapters import adapt
from stigg_cache.adapters._closing import ClosedAfterCalls
from stigg_cache.adapters.httpx_rest import HttpxRestAdapter
from stigg_cache.errors import StiggUnavailableError
from stigg_cache.models import Snapshot
from stigg_cache.testing.fake import FakeMode, FakeStigg
from tests.conftest import API_KEY


def _fetching(adapter: Any) -> tuple[threading.Thread, list[Snapshot | BaseException]]:
    """A fetch of ``acme`` under way on a thread, and where its outcome lands."""
    outcome: list[Snapshot | BaseException] = []

    def fetch() -> None:
        try:
            outcome.append(adapter.fetch_entitlements("acme", None, timeout_s=10))
        except Exception as error:  # the outcome is what the test reads
            outcome.append(error)

    thread = threading.Thread(target=fetch)
    thread.start()
    return thread, outcome


def _wait_until_at_the_fake(thread: threading.Thread) -> None:
    """The fetch has reached the slow fake (it answers only after its delay)."""
    thread.join(timeout=0.3)
    assert thread.is_alive()


def test_a_call_begun_after_close_never_reaches_stigg_and_the_one_under_way_finishes(
    fake: FakeStigg,
) -> None:
    # Calls that began after close() went out while another kept the client open: a
    # connection opened on a client being closed, for an answer nobody kept.
    adapter = adapt(None, api_key=API_KEY, base_url=fake.url, fetch_timeout_s=10)
    assert isinstance(adapter, ClosedAfterCalls)
    fake.set_mode(FakeMode.SLOW, delay_s=1.0)
    under_way, outcome = _fetching(adapter)
    _wait_until_at_the_fake(under_way)
    adapter.close()
    with pytest.raises(StiggUnavailableError, match="client closed"):
        adapter.fetch_entitlements("acme", None, timeout_s=10)
    with pytest.raises(StiggUnavailableError, match="client closed"):
        adapter.report_usage([{"customerId": "acme"}], timeout_s=10)
    under_way.join(timeout=10)
    (answer,) = outcome
    assert isinstance(answer, Snapshot)  # answered, not cut short by close()
    assert fake.entitlement_requests() == 1
    assert fake.counts["POST usage"] == 0
    assert isinstance(adapter.inner, HttpxRestAdapter)
    assert adapter.inner._http.is_closed  # closed as that call returned


class _CloseFails(HttpxRestAdapter):
    def close(self) -> None:
        super().close()
        raise OSError("the pool would not close")


def test_a_close_that_fails_after_the_last_call_is_logged_and_the_call_keeps_its_answer(
    fake: FakeStigg, caplog: pytest.LogCaptureFixture
) -> None:
    # The deferred close runs as the last call returns: its failure replaced that call's
    # answer (a grant Stigg had made came back as an OSError).
    adapter = ClosedAfterCalls(_CloseFails(api_key=API_KEY, base_url=fake.url))
    fake.set_mode(FakeMode.SLOW, delay_s=0.5)
    under_way, outcome = _fetching(adapter)
    _wait_until_at_the_fake(under_way)
    with caplog.at_level(logging.WARNING, logger="stigg_cache"):
        adapter.close()
        under_way.join(timeout=10)
    (answer,) = outcome
    assert isinstance(answer, Snapshot)
    (logged,) = [r.getMessage() for r in caplog.records]
    assert logged == (
        "stigg_cache.adapter_close_failed: httpx-rest: OSError: the pool would not close"
    )
