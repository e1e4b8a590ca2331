"""Signing keys are what they look like, and an unsigned network store is said out loud (#16)."""

from __future__ import annotations

from typing import Any

import pytest

from stigg_cache import ConfigurationError
from stigg_cache.stores.signed import ENV_SIGNING_KEY, signing_keys

KEY = "a-perfectly-good-signing-key-0123456789"


@pytest.mark.parametrize("given", [[32], [KEY, 7], [None]])
def test_a_key_that_is_not_text_or_bytes_is_refused(given: Any) -> None:
    with pytest.raises(TypeError, match="str or bytes"):
        signing_keys(given)


def test_an_empty_list_never_turns_off_the_environments_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(ENV_SIGNING_KEY, KEY)
    with pytest.raises(ConfigurationError, match="turn signing off"):
        signing_keys([])
    assert signing_keys(None) == [KEY.encode()]
