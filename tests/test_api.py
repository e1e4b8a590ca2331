"""The public surface: exports, argument checking, and what never leaks."""

from __future__ import annotations

import contextlib
import logging
import shutil
import subprocess
import sys
import threading
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import stigg_cache
from stigg_cache import ConfigurationError, InvalidArgumentError, ResilientClient, environment_token
from stigg_cache._support import plugins
from stigg_cache.testing import runtime_of
from stigg_cache.testing.fake import FakeMode, FakeStigg
from tests.conftest import API_KEY, MakeClient
from tests.forking import in_child
from tests.helpers import eventually


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
    with pytest.raises(error, match=message) as raised:
        client.get_entitlement(**kwargs)  # type: ignore[arg-type]
    assert isinstance(raised.value, InvalidArgumentError)  # one root for every caller mistake


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda c: c.report_usage(customer_id="c", feature_id="f", value="1"), TypeError),
        (lambda c: c.report_event([{"customer_id": "c", "event_name": "e", "x": 1}]), ValueError),
        (lambda c: c.report_event({"customer_id": "c"}), TypeError),
        (lambda c: c.has_access("c", "f", requested_usage=-1), ValueError),
        (lambda c: ResilientClient(None, api_key="k", store="memory://", check_timeout=0),
         ValueError),
        (lambda c: ResilientClient(None, api_key="k", store=3),  # type: ignore[arg-type]
         TypeError),
    ],
)  # fmt: skip
def test_every_caller_mistake_is_an_invalid_argument_and_the_builtin_it_resembles(
    make_client: MakeClient, call: Callable[[ResilientClient], object], error: type[Exception]
) -> None:
    with pytest.raises(InvalidArgumentError) as raised:
        call(make_client())
    assert isinstance(raised.value, error)


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
    monkeypatch.setattr(plugins, "entry_points", lambda group: [])
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
    folder = tmp_path / "stigg-cache" / environment_token("https://api.stigg.io", "k")
    with ResilientClient(None, api_key="k", base_url="https://api.stigg.io") as client:
        assert client.status().store == f"sqlite:///{folder}/stigg-cache.db"
    assert (folder / "stigg-cache.db").exists()


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
        seen = [
            repr(client),
            repr(client.status()),
            repr(runtime_of(client).parts.adapter),
            caplog.text,
        ]
    files = [p.read_bytes() for p in store_dir.rglob("*") if p.is_file()]
    assert all(API_KEY not in text for text in seen)
    assert all(API_KEY.encode() not in data for data in files)


def test_importing_the_package_leaves_asyncio_unloaded() -> None:
    """Sync services pay nothing for AsyncResilientClient until they build one."""
    probe = "import sys, stigg_cache; print('asyncio' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def _held_in(folder: Path) -> list[str]:
    """Files under ``folder`` this process holds open."""
    held = []
    for fd in Path("/proc/self/fd").iterdir():
        with contextlib.suppress(OSError):  # the listing's own fd is gone by now
            target = str(fd.readlink())
            if target.startswith(str(folder)):
                held.append(target)
    return held


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"inner": {}}, TypeError),  # the policy watcher's threads had started
        ({"api_key": None}, ConfigurationError),  # so had they, STIGG_API_KEY unset
        ({"outbox_max_records": 0}, ValueError),  # the store and outbox were open
        ({"outbox": "mysql://x"}, ConfigurationError),  # the store was open
    ],
)
def test_a_constructor_that_fails_leaves_no_thread_or_open_file(
    kwargs: dict[str, object], error: type[Exception], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.delenv("STIGG_API_KEY", raising=False)
    policy = tmp_path / "fallback.yaml"
    shutil.copy(Path(__file__).parent.parent / "examples" / "fallback.yaml", policy)
    options: dict[str, object] = {
        "inner": None, "api_key": "k", "policy": policy, "store": f"sqlite:///{tmp_path}/c.db",
    }  # fmt: skip
    before = set(threading.enumerate())

    def leftovers() -> set[threading.Thread]:
        return {t for t in threading.enumerate() if t not in before and t.is_alive()}

    with pytest.raises(error):
        ResilientClient(**{**options, **kwargs})  # type: ignore[arg-type]
    eventually(lambda: not leftovers(), within_s=5)  # a watcher's thread ends in its join
    assert _held_in(tmp_path) == []


def test_decision_hooks_hear_every_check_on_both_paths_until_unsubscribed(
    make_client: MakeClient,
) -> None:
    client = make_client()
    heard: list[tuple[str, str]] = []

    def hook(kind: str, answer: Any, seconds: float) -> None:
        assert seconds >= 0
        heard.append((kind, answer.decision.source.value))

    def broken(kind: str, answer: Any, seconds: float) -> None:
        raise RuntimeError("a bug in the caller's hook")

    stop = client.on_decision(hook)
    stop_broken = client.on_decision(broken)
    client.get_boolean_entitlement(customer_id="acme", feature_id="sso")  # the full path
    client.get_boolean_entitlement(customer_id="acme", feature_id="sso")  # the fast path
    client.get_metered_entitlement(customer_id="acme", feature_id="api_calls")

    def in_worker() -> list[list[str]]:  # a worker forked after the hook was subscribed
        client.get_numeric_entitlement(customer_id="acme", feature_id="seats")
        return [list(pair) for pair in heard[3:]]

    assert in_child(in_worker) == [["numeric", "CACHE"]]
    assert heard == [("boolean", "LIVE"), ("boolean", "CACHE"), ("metered", "CACHE")]
    assert client.status().faults["stigg_cache.hook_failed"] == 3  # and no check failed
    stop()
    stop_broken()
    client.get_boolean_entitlement(customer_id="acme", feature_id="sso")
    assert len(heard) == 3
    assert "_check" not in vars(client)  # the bare paths again: no cost without hooks
