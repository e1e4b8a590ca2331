"""The public surface: exports, argument checking, and what never leaks."""

from __future__ import annotations

import logging
import subprocess
import sys
import types
from pathlib import Path

import pytest

import stigg_cache
from stigg_cache import ConfigurationError, ResilientClient, _plugins
from stigg_cache.chaos.fake import FakeMode, FakeStigg
from tests.conftest import API_KEY, MakeClient


def test_all_is_complete_and_sorted() -> None:
    public = {
        name
        for name, value in vars(stigg_cache).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert set(stigg_cache.__all__) == public
    # isort-style, as ruff's RUF022 keeps it: CONSTANTS, then Classes, then functions.
    order = sorted(stigg_cache.__all__, key=lambda n: (not n.isupper(), not n[0].isupper(), n))
    assert stigg_cache.__all__ == order


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"customer_id": "", "feature_id": "f"}, ValueError, "customer_id must be a non-empty"),
        ({"customer_id": 5, "feature_id": "f"}, TypeError, "customer_id must be a str"),
        ({"customer_id": "c", "feature_id": None}, TypeError, "feature_id must be a str"),
        ({"customer_id": "c", "feature_id": "f", "resource_id": " "}, ValueError, "resource_id"),
        ({"customer_id": "c", "feature_id": "f", "requested_usage": -1}, ValueError, ">= 0"),
        ({"customer_id": "c", "feature_id": "f", "requested_usage": "1"}, TypeError, "number"),
        (
            {"customer_id": "c", "feature_id": "f", "requested_usage": float("nan")},
            ValueError,
            "finite",
        ),
    ],
)
def test_caller_mistakes_raise_precise_errors(
    make_client: MakeClient, kwargs: dict[str, object], error: type[Exception], message: str
) -> None:
    client = make_client()
    with pytest.raises(error, match=message):
        client.get_entitlement(**kwargs)  # type: ignore[arg-type]


def test_enum_values_must_be_a_list_not_a_string(make_client: MakeClient) -> None:
    with pytest.raises(TypeError, match="list of strings"):
        make_client().get_enum_entitlement(customer_id="c", feature_id="f", requested_values="a")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"check_timeout": 0}, "check_timeout must be a positive"),
        ({"store": "mysql://x"}, "no store is registered for mysql://"),
        ({"store": "sqlite://relative.db"}, "sqlite:///relative/path"),
        ({"store": "no-scheme"}, "is not a URL"),
    ],
)
def test_configuration_mistakes_say_what_to_change(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        ResilientClient(None, api_key="k", **kwargs)  # type: ignore[arg-type]


def test_a_store_plugin_not_installed_says_which_package_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The dev environment has the Redis plugin installed: hide every registered plugin.
    monkeypatch.setattr(_plugins, "entry_points", lambda group: [])
    with pytest.raises(ConfigurationError, match=r"pip install stigg-cache-redis"):
        ResilientClient(None, api_key="k", store="redis://127.0.0.1:6379/0")


def test_builtin_client_needs_an_api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STIGG_API_KEY", raising=False)
    with pytest.raises(ConfigurationError, match="STIGG_API_KEY"):
        ResilientClient(None, store="memory://")


def test_unknown_inner_client_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="cannot wrap a builtins.dict"):
        ResilientClient({}, store="memory://")


def test_default_store_persists_in_the_user_cache_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    with ResilientClient(None, api_key="k") as client:
        assert client.status().store == f"sqlite:///{tmp_path}/stigg-cache/stigg-cache.db"
    assert (tmp_path / "stigg-cache" / "stigg-cache.db").exists()


def test_the_api_key_never_reaches_logs_status_reprs_or_the_store(
    fake: FakeStigg, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    store_dir = tmp_path / "s"
    with ResilientClient(
        None, api_key=API_KEY, base_url=fake.url, store=f"disk:///{store_dir}", check_timeout=0.2
    ) as client:
        client.get_boolean_entitlement(customer_id="acme", feature_id="sso")
        fake.set_mode(FakeMode.ERROR_5XX)
        client.get_boolean_entitlement(customer_id="other", feature_id="sso")
        seen = [repr(client), repr(client.status()), repr(client._adapter), caplog.text]
    files = [p.read_bytes() for p in store_dir.rglob("*") if p.is_file()]
    assert all(API_KEY not in text for text in seen)
    assert all(API_KEY.encode() not in data for data in files)


def test_importing_the_package_leaves_asyncio_unloaded() -> None:
    """Sync services pay nothing for AsyncResilientClient until they build one."""
    probe = "import sys, stigg_cache; print('asyncio' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
