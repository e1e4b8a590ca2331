"""``stigg-cache fake``: the fake Stigg as a server of its own, for local development.

Customers come from a small YAML or JSON file, or the demo account::

    customers:
      acme:
        sso: true                             # a boolean feature (false: not granted)
        seats: 25                             # a configuration number
        api_calls: {limit: 1000, usage: 420}  # metered, reset monthly (limit: null: unlimited)
        models: [gpt-4, claude]               # an enum feature
      newcorp: {sso: false}
    meters:                                   # optional: events counted into a metered feature
      api.request: api_calls
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

import click
import yaml

from stigg_cache.errors import ConfigurationError
from stigg_cache.models import FeatureEntitlement
from stigg_cache.testing.account import FakeAccount
from stigg_cache.testing.fake import LOOPBACK, FakeStigg, boolean, enum_feature, metered, numeric

LOCAL_API_KEY = "sk-fake-stigg-local"  # not a secret: the key the local fake asks for
DEFAULT_PORT = 8077
DEMO_CUSTOMERS: Mapping[str, Any] = {
    "customers": {
        "acme": {"sso": True, "api_calls": {"limit": 1000, "usage": 420}},
        "newcorp": {"sso": False},
    },
    "meters": {"api.request": "api_calls"},
}
_SHAPES = "true/false, a number, a list of enum values, or {limit: N or null, usage: N}"


def account_from(data: object, *, where: str = "customers", **options: Any) -> FakeAccount:
    """A :class:`FakeAccount` holding the customers (and meters) of ``data``, in the format
    of this module's docstring; ``options`` go to :class:`FakeAccount`.

    Raises:
        ConfigurationError: ``data`` is not in that format (the message says where).
    """
    document = _mapping(data, where, {"customers", "meters"})
    account = FakeAccount(**options)
    customers = _mapping(document.get("customers", {}), f"{where}: customers", None)
    for customer_id, features in customers.items():
        place = f"{where}: customers.{customer_id}"
        account.set_customer(
            str(customer_id),
            [
                _entitlement(str(feature), value, f"{place}.{feature}")
                for feature, value in _mapping(features, place, None).items()
            ],
        )
    for event, feature in _mapping(document.get("meters", {}), f"{where}: meters", None).items():
        if not isinstance(feature, str):
            raise ConfigurationError(f"{where}: meters.{event}: name the metered feature")
        account.meter(str(event), feature)
    return account


def load_account(path: Path, **options: Any) -> FakeAccount:
    """:func:`account_from` the YAML or JSON file at ``path``."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeError, yaml.YAMLError) as error:
        raise ConfigurationError(f"{path}: cannot be read as YAML or JSON: {error}") from error
    return account_from(data, where=str(path), **options)


def _mapping(value: object, where: str, keys: set[str] | None) -> Mapping[Any, Any]:
    if not isinstance(value, Mapping):
        raise ConfigurationError(f"{where}: expected a mapping, got {type(value).__name__}")
    unknown = sorted(map(str, set(value) - keys)) if keys is not None else []
    if unknown:
        raise ConfigurationError(f"{where}: unknown key(s) {unknown}; known: {sorted(keys or ())}")
    return value


def _entitlement(feature_id: str, value: object, where: str) -> FeatureEntitlement:
    if isinstance(value, bool):
        return boolean(feature_id, granted=value)
    if isinstance(value, int | float):
        return numeric(feature_id, float(value))
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return enum_feature(feature_id, value)
    if isinstance(value, Mapping) and set(value) <= {"limit", "usage"}:
        limit, usage = value.get("limit"), value.get("usage", 0)
        numbers = isinstance(usage, int | float) and not isinstance(usage, bool)
        if numbers and (limit is None or (isinstance(limit, int | float) and limit >= 0)):
            return metered(feature_id, limit=limit, usage=float(usage), unlimited=limit is None)
    raise ConfigurationError(f"{where}: expected {_SHAPES}; got {value!r}")


@click.command("fake")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=DEFAULT_PORT,
    show_default=True,
    help=f"Port on {LOOPBACK} (0: any free port).",
)
@click.option(
    "--customers",
    "customers_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="YAML or JSON file of customers (default: the demo account).",
)
@click.option("--api-key", default=LOCAL_API_KEY, show_default=True, help="The key to require.")
def fake(port: int, customers_file: Path | None, api_key: str) -> None:
    """Run a fake Stigg on loopback for local development, until Ctrl-C or SIGTERM."""
    try:
        account = (
            account_from(DEMO_CUSTOMERS)
            if customers_file is None
            else load_account(customers_file.expanduser().resolve())
        )
    except ConfigurationError as error:
        raise click.UsageError(str(error)) from error
    try:
        server = FakeStigg(api_key=api_key, port=port, account=account)
    except OSError as error:
        raise click.UsageError(
            f"cannot listen on {LOOPBACK}:{port} ({error.strerror or error}): "
            "choose another --port, or --port 0 for any free one"
        ) from error
    with server, _until_stopped() as stopped:
        _announce(server, customers_file)
        stopped.wait()
    served = sum(server.counts.values())
    click.echo(f"fake Stigg stopped after {served} request(s)")


def _announce(server: FakeStigg, customers_file: Path | None) -> None:
    try:
        graphql = server.graphql_url
    except ImportError as error:
        graphql = f"unavailable: {error}"
    who = ", ".join(server.account.customer_ids()) or "none"
    source = "the demo account" if customers_file is None else str(customers_file)
    lines = [
        f"fake Stigg on {LOOPBACK}:{server.port} (loopback only); Ctrl-C or SIGTERM stops it",
        f"  REST base URL  {server.url}",
        f"  GraphQL        {graphql}",
        f"  Edge           {server.edge_url}",
        f"  API key        {server.api_key}",
        f"  customers      {who} ({source})",
        "point your app at it:",
        f"  export STIGG_BASE_URL={server.url} STIGG_API_KEY={server.api_key}",
    ]
    click.echo("\n".join(lines))


@contextmanager
def _until_stopped() -> Iterator[threading.Event]:
    """An event set by SIGINT or SIGTERM; the previous handlers come back afterwards."""
    stopped = threading.Event()

    def stop(*_: object) -> None:
        stopped.set()

    handlers: dict[int, Callable[[int, FrameType | None], Any] | int | None] = {
        sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield stopped
    finally:
        for sig, handler in handlers.items():
            if handler is not None:  # None: set outside Python, nothing to put back
                signal.signal(sig, handler)
