"""A Redis password reaches Redis, and nothing else (#16)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from stigg_cache import ConfigurationError, ResilientClient
from stigg_cache.testing import runtime_of
from stigg_cache.testing.fake import FakeStigg
from stigg_cache_redis.outbox import RedisOutbox

from conftest import API_KEY, OwnRedis, namespace_for

SECRET = "s3cret-redis-password"


@pytest.fixture
def guarded_redis() -> Iterator[OwnRedis]:
    server = OwnRedis(password=SECRET)
    server.start()
    yield server
    server.stop()


@pytest.mark.parametrize("form", ["userinfo", "query"])
def test_the_readmes_redis_url_logs_in_with_its_password_and_never_shows_it(
    fake: FakeStigg, tmp_path: Path, guarded_redis: OwnRedis, form: str
) -> None:
    where = f"127.0.0.1:{guarded_redis.port}/0"
    ours = f"namespace={namespace_for(tmp_path)}&timeout=0.1&local_outbox={tmp_path}/local.db"
    store = (  # the README's own form, and a password given as a query parameter
        f"redis://:{SECRET}@{where}?{ours}"
        if form == "userinfo"
        else f"redis://{where}?password={SECRET}&{ours}"
    )
    client = ResilientClient(None, api_key=API_KEY, base_url=fake.url, store=store)
    client.report_usage(customer_id="acme", feature_id="api_calls", value=1)
    outbox = runtime_of(client).parts.usage.outbox
    assert isinstance(outbox, RedisOutbox)
    assert outbox.local.stats(0).pending == 0  # written to Redis: it logged in
    assert client.flush(timeout=10).drained
    status = client.status()
    assert (status.store_healthy, status.outbox_error) == (True, None)
    shown = [status.store, repr(client), repr(outbox), repr(outbox.settings), str(status)]
    assert not [text for text in shown if SECRET in text]
    assert "***" in status.store
    client.close()


@pytest.mark.parametrize("reserved", ["/", "?", "#"])
def test_a_password_not_percent_encoded_is_refused_without_being_shown(
    fake: FakeStigg, tmp_path: Path, reserved: str
) -> None:
    """``urlsplit`` ends the host at the first ``/``, ``?`` or ``#``: such a URL names no
    host, and the message saying so used to print the password whole."""
    password = f"{SECRET[:6]}{reserved}{SECRET[6:]}"
    store = f"redis://:{password}@127.0.0.1:6379/0?namespace={namespace_for(tmp_path)}"
    with pytest.raises(ConfigurationError) as refused:
        ResilientClient(None, api_key=API_KEY, base_url=fake.url, store=store)
    message = str(refused.value)
    assert [piece for piece in (SECRET[:6], SECRET[6:]) if piece in message] == []
    assert "percent-encode" in message
