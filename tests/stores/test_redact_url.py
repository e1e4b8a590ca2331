"""A store URL's password never shows, whatever it holds (#28).

``urlsplit`` ends the authority at the first ``/``, ``?`` or ``#``: a password holding
one of them (not percent-encoded) used to be taken for a path, a query or a fragment,
and shown whole by ``redact_url()`` and by the messages built with it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from stigg_cache import ConfigurationError, ResilientClient
from stigg_cache.stores import redact_url
from stigg_cache.testing.fake import FakeStigg
from tests.conftest import API_KEY

PASSWORDS = [
    "plain-s3cret",
    "s3c/ret",
    "s3c?ret",
    "s3c#ret",
    "s3c@ret",
    "s3c:ret",
    "s3c%2Fret",
    "s3c&ret",
    "s3c ret",
    "/?#@:%&",
    "w/e?i#r@d:p%26ss&x",
]
FORMS = {
    "userinfo": "redis://:{pw}@cache.internal:6379/0?namespace=prod",
    "user and password": "rediss://default:{pw}@cache.internal:6380/2",
    "no scheme": "default:{pw}@cache.internal:6379",
    "query": "redis://cache.internal:6379/0?password={pw}&namespace=prod",
    "query, last": "redis://cache.internal:6379/0?namespace=prod&password={pw}",
    "query, other name": "postgresql://db.internal/app?sslpassword={pw}&sslmode=require",
    "query, encoded name": "redis://cache.internal/0?pass%77ord={pw}",
    "both": "redis://u:{pw}@cache.internal/0?auth_token={pw}",
}


def _pieces(password: str) -> list[str]:
    """The password and every run of 3+ characters between its reserved characters."""
    runs = "".join(c if c.isalnum() else " " for c in password).split()
    return [password, *(run for run in runs if len(run) >= 3)]


@pytest.mark.parametrize("password", PASSWORDS)
@pytest.mark.parametrize("form", FORMS)
def test_no_part_of_a_password_shows_whatever_it_holds(form: str, password: str) -> None:
    url = FORMS[form].format(pw=password)
    shown = redact_url(url)
    assert [piece for piece in _pieces(password) if piece in shown] == [], shown
    assert "***" in shown
    if not (form == "both" and "@" in password):  # else the last @ may be the query's:
        assert "cache.internal" in shown or "db.internal" in shown  # the host hides too


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:////var/lib/app/cache.db",
        "sqlite:///relative/cache.db",
        "disk:////var/lib/app/cache",
        "memory://",
        "redis://cache.internal:6379/0?namespace=prod&timeout=0.1",
        "redis://user@cache.internal:6379/0",
        "sqlite:////srv/at@home/cache.db",
    ],
)
def test_a_url_without_a_secret_shows_as_given(url: str) -> None:
    assert redact_url(url) == url


def test_what_follows_a_password_in_the_query_still_shows() -> None:
    shown = redact_url("redis://h:6379/0?password=a&b#c&namespace=prod&timeout=0.2")
    assert shown == "redis://h:6379/0?password=***&namespace=prod&timeout=0.2"


def test_a_store_url_refused_for_its_form_is_named_without_its_password(
    fake: FakeStigg, tmp_path: Path
) -> None:
    with pytest.raises(ConfigurationError, match="is not a URL") as refused:
        ResilientClient(
            None, api_key=API_KEY, base_url=fake.url, store="default:s3cret-pw@cache.internal:6379"
        )
    assert "s3cret-pw" not in str(refused.value)
    assert not list(tmp_path.iterdir())
