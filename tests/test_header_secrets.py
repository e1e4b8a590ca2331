"""A key HTTP cannot carry is refused at construction, and no header value is ever shown (#28).

Keys read from a file or a Kubernetes secret often end in a newline; h11, http.client and
requests refuse such a header quoting its whole value, and that text used to travel on
into ``Decision.reason``, ``status()``, log lines, dead letters and the outbox file.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import stigg

from stigg_cache import ConfigurationError, ResilientClient, Source
from stigg_cache.testing import runtime_of
from stigg_cache.testing.fake import FakeStigg
from tests.conftest import API_KEY
from tests.helpers import eventually

SECRET = API_KEY[len("sk-test-") :]  # the part of the key a message must never show


BAD_KEYS = [
    ("newline", f"{API_KEY}\n", "a line feed"),
    ("CRLF", f"{API_KEY}\r\n", "a carriage return"),
    ("leading space", f" {API_KEY}", "a space"),
    ("trailing tab", f"{API_KEY}\t", "a tab"),
    ("NUL", f"{API_KEY[:9]}\x00{API_KEY[9:]}", "U+0000"),
    ("non-ASCII", f"{API_KEY}\u00e9", "U+00E9"),
]
GIVEN = ["api_key", "STIGG_API_KEY", "REST SDK", "REST SDK header"]


@pytest.mark.parametrize(
    ("given", "key", "said"),
    [
        pytest.param(given, key, said, id=f"{given}-{name}")
        for given in GIVEN
        for name, key, said in BAD_KEYS
        if not (given == "STIGG_API_KEY" and "\x00" in key)  # no environment holds a NUL
    ],
)
def test_a_key_no_header_can_carry_is_refused_at_construction_without_showing_it(
    fake: FakeStigg,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    given: str,
    key: str,
    said: str,
) -> None:
    options: dict[str, Any] = {"store": f"sqlite:///{tmp_path}/cache.db"}
    inner: Any = None
    if given == "api_key":
        options.update(api_key=key, base_url=fake.url)
    elif given == "STIGG_API_KEY":
        monkeypatch.setenv("STIGG_API_KEY", key)
        options.update(base_url=fake.url)
    elif given == "REST SDK":
        inner = stigg.Stigg(api_key=key, base_url=fake.url)
    else:  # a header of the user's own, next to a good key
        inner = stigg.Stigg(api_key=API_KEY, base_url=fake.url, default_headers={"X-Auth": key})
    with pytest.raises(ConfigurationError) as refused:
        ResilientClient(inner, **options)
    message = str(refused.value)
    assert SECRET not in message
    assert said in message
    assert "strip" in message
    assert ("X-Auth" if given == "REST SDK header" else "X-API-KEY") in message
    assert not list(tmp_path.iterdir())  # refused before anything was opened


def test_no_header_value_reaches_a_reason_a_status_a_log_a_dead_letter_or_a_file(
    fake: FakeStigg, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A header that changed after construction (so no check there saw it): h11 refuses it
    quoting the value, and that text must stop where it is raised."""
    caplog.set_level(logging.DEBUG)
    with ResilientClient(
        None, api_key=API_KEY, base_url=fake.url, store=f"sqlite:///{tmp_path}/cache.db"
    ) as client:
        runtime_of(client).parts.adapter.inner._http.headers["X-API-KEY"] = f"{API_KEY}\n"  # type: ignore[attr-defined]
        answer = client.get_boolean_entitlement(customer_id="acme", feature_id="sso")
        assert answer.decision.source is Source.DEFAULT
        client.report_usage(customer_id="acme", feature_id="api_calls", value=1)

        def tried() -> bool:
            status = client.status()
            return status.dead_letters > 0 or status.sending_resumes_at is not None

        eventually(tried)
        status = client.status()
        assert (status.outbox_depth, status.dead_letters) == (1, 0)  # kept, not dead
        assert status.breaker == "closed"  # our request, not Stigg's health
        dead = client.outbox.dead_letters()
        texts = [answer.decision.reason, repr(status), *map(repr, dead)]
    # ours (httpcore's own DEBUG trace quotes h11's error: only refusing the key at
    # construction keeps it out of there)
    texts += [r.getMessage() for r in caplog.records if r.name.startswith("stigg_cache")]
    assert "header" in (answer.decision.reason or "")
    assert [text for text in texts if text and SECRET in text] == []
    for path in tmp_path.iterdir():
        assert SECRET.encode() not in path.read_bytes(), path
