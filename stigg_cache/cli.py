"""The ``stigg-cache`` command."""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn, TypeVar

import click

from stigg_cache import SYSTEM_CLOCK
from stigg_cache.adapters import environment_of
from stigg_cache.chaos.command import chaos
from stigg_cache.environment import checked_namespace, namespaces_on_disk
from stigg_cache.errors import (
    ConfigurationError,
    PolicyError,
    StiggCacheError,
    StoreNotFoundError,
    TamperedEntryError,
)
from stigg_cache.models import Snapshot
from stigg_cache.outbox import default_outbox_url, open_outbox
from stigg_cache.outbox.admin import OutboxAdmin
from stigg_cache.policy.explain import Looked, explain, lint
from stigg_cache.policy.model import BUILTIN_POLICY, FallbackPolicy
from stigg_cache.policy.rules import plans_unmatchable
from stigg_cache.stores import (
    MISSING,
    SNAPSHOT_PREFIX,
    OutdatedEntryError,
    Store,
    decode_snapshot,
    default_store_url,
    open_store,
    snapshot_key,
)
from stigg_cache.stores.layered import SnapshotCache
from stigg_cache.stores.signed import SignedStore, signed_value, signing_keys
from stigg_cache.testing.standalone import fake

_T = TypeVar("_T")


@click.group()
@click.version_option(package_name="stigg-cache", prog_name="stigg-cache")
def main() -> None:
    """stigg-cache: resilient Stigg entitlement checks."""


@main.command("bench")
@click.option("--out", default="bench/results.json", show_default=True, help="JSON output.")
@click.option("--tiny", is_flag=True, help="Tiny sizes: a smoke run.")
@click.option("--rows", default=None, help="Only these rows, by label or number: 3,5,24a.")
def bench(out: str, tiny: bool, rows: str | None) -> None:
    """Benchmarks: every figure a ratio against a baseline measured in the same run.

    Needs the SDKs it compares against: pip install 'stigg-cache[bench,rest]'.
    """
    from stigg_cache.benchmarks import main as run_benchmarks  # noqa: PLC0415 - heavy, rarely used

    sys.exit(
        run_benchmarks(
            [
                "--out",
                out,
                *(["--tiny"] if tiny else []),
                *(["--rows", rows] if rows is not None else []),  # '' is refused, not "every row"
            ]
        )
    )


CLIENT_FAMILIES = ("rest", "httpx", "graphql-v1", "graphql-v2", "sidecar")
PLANLESS_CLIENTS = frozenset({"sidecar"})  # its protocol carries no plan


NAMESPACE_HELP = (
    "The environment whose default files to read: the namespace= its clients were given, "
    "or the name of its folder in the user's cache directory (default: that of "
    "STIGG_API_KEY and STIGG_BASE_URL, as the library's own default)"
)


def _namespace_option(command: Callable[..., None]) -> Callable[..., None]:
    return click.option("--namespace", default=None, help=NAMESPACE_HELP)(command)


def _default_url(kind: str, namespace: str | None) -> str:
    """The library's default store or outbox of an environment (nothing is created)."""
    chosen = environment_of(None, None, None) if namespace is None else namespace
    checked_namespace(chosen)
    if kind == "outbox":
        return default_outbox_url(None, chosen, adopt=False)
    return default_store_url(chosen, adopt=False)


def _opened(open_it: Callable[..., _T], url: str | None, kind: str, namespace: str | None) -> _T:
    """Open ``url`` read-only, else the default store or outbox of the environment; a
    missing default says which environments have files here."""
    if url is not None:
        return open_it(url, read_only=True)
    try:
        return open_it(_default_url(kind, namespace), read_only=True)
    except StoreNotFoundError as error:
        found = ", ".join(namespaces_on_disk()) or "none"
        raise StoreNotFoundError(
            f"{error}; environments with files here: {found} (choose one with --namespace)"
        ) from error


@main.group()
def policy() -> None:
    """Validate and explain fallback.yaml."""


@policy.command("check")
@click.argument("file", type=click.Path(path_type=Path))
@click.option(
    "--client",
    type=click.Choice(CLIENT_FAMILIES),
    default=None,
    help="The Stigg client the policy runs with: warns of rules it cannot match "
    "(the sidecar's answers name no plan).",
)
def policy_check(file: Path, client: str | None) -> None:
    """Validate FILE; exit 1 with every error (file:line: key: message)."""
    try:
        loaded = FallbackPolicy.from_file(file)
    except PolicyError as error:
        click.echo(str(error), err=True)
        sys.exit(1)
    click.echo(
        f"{file}: valid (version {loaded.version}; {len(loaded.features)} features, "
        f"{len(loaded.rules)} rules, {len(loaded.meters)} meters)"
    )
    warnings = lint(loaded)
    if client in PLANLESS_CLIENTS:
        unmatchable = plans_unmatchable(loaded.rules, f"the {client} client")
        warnings += [] if unmatchable is None else [unmatchable]
    for warning in warnings:
        click.echo(f"warning: {warning}", err=True)


@policy.command("explain")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--customer", "customer_id", required=True, help="Customer id to check.")
@click.option("--feature", "feature_id", required=True, help="Feature id to check.")
@click.option("--resource", "resource_id", default=None, help="Resource id, if any.")
@click.option(
    "--store",
    "store_url",
    default=None,
    help="Store URL holding snapshots, read only (default: the library's default store of "
    "the environment, if there is one), e.g. sqlite:////var/lib/app/stigg-cache.db",
)
@_namespace_option
def policy_explain(
    file: Path,
    *,
    customer_id: str,
    feature_id: str,
    resource_id: str | None,
    store_url: str | None,
    namespace: str | None,
) -> None:
    """Which tier and rule would answer a check right now, and why."""
    try:
        loaded = FallbackPolicy.from_file(file)
    except PolicyError as error:
        click.echo(str(error), err=True)
        sys.exit(1)
    try:
        store: Store | None = _opened(open_store, store_url, "store", namespace)
    except StoreNotFoundError as error:
        if store_url is not None:
            _refuse(error)
        click.echo(f"(the library's default store is not there: {error})", err=True)
        store = None  # nothing is cached on this machine
    except StiggCacheError as error:
        _refuse(error)
    try:
        for line in explain(
            loaded,
            customer_id=customer_id,
            feature_id=feature_id,
            resource_id=resource_id,
            looked=None if store is None else _looked(store, customer_id, resource_id),
        ):
            click.echo(printable(line))
    finally:
        if store is not None:
            store.close()


def _looked(store: Store, customer_id: str, resource_id: str | None) -> Looked:
    """What ``store`` holds for the customer, read as a check reads it, with the problems met."""
    faults: list[str] = []
    cached = SnapshotCache(
        store, SYSTEM_CLOCK, lambda event, error: faults.append(f"{event}: {error}")
    )
    return Looked(cached.get(customer_id, resource_id), tuple(faults))


def _refuse(error: StiggCacheError) -> NoReturn:
    """Exit with ``error``: 2 when what was named is not there or not of the kind asked
    for (the caller's to change), 1 when it could not be read."""
    click.echo(str(error), err=True)
    sys.exit(2 if isinstance(error, ConfigurationError) else 1)


def _looked_at(open_it: Callable[[], _T]) -> _T:
    """Open what a command only looks at (read-only: it never creates a file or a table)."""
    try:
        return open_it()
    except StiggCacheError as error:
        _refuse(error)


@main.group()
def outbox() -> None:
    """Inspect buffered usage and dead letters."""


def _outbox_option(command: Callable[..., None]) -> Callable[..., None]:
    return _namespace_option(
        click.option(
            "--outbox",
            "--store",
            "url",
            default=None,
            show_default="the library's default outbox of the environment",
            help="Outbox URL, e.g. sqlite:////var/lib/app/stigg-cache-outbox.db",
        )(command)
    )


@outbox.command("status")
@_outbox_option
def outbox_status(url: str | None, namespace: str | None) -> None:
    """Pending, leased, sent and dead-lettered counts (read only)."""
    box = _looked_at(lambda: _opened(open_outbox, url, "outbox", namespace))
    try:
        stats = box.stats(time.time())
    finally:
        box.close()
    oldest = (
        "-"
        if stats.oldest_pending_at is None
        else f"{time.time() - stats.oldest_pending_at:.0f}s ago"
    )
    click.echo(
        f"pending {stats.pending} (leased {stats.leased}, oldest stamped {oldest}), "
        f"recently sent {stats.sent_unsettled}, dead letters {stats.dead_letters}"
    )


@outbox.command("dead-letters")
@_outbox_option
@click.option("--limit", default=100, show_default=True)
def outbox_dead_letters(url: str | None, namespace: str | None, limit: int) -> None:
    """List dead letters with the reason each was set aside (read only)."""
    box = _looked_at(lambda: _opened(open_outbox, url, "outbox", namespace))
    try:
        letters = OutboxAdmin(box, SYSTEM_CLOCK).dead_letters(limit)
    finally:
        box.close()
    for letter in letters:
        record = letter.record
        fields = (record.customer_id, record.name, record.idempotency_key, letter.reason)
        click.echo("\t".join([str(letter.id), record.kind.value, *map(printable, fields)]))
    click.echo(f"{len(letters)} dead letter(s)", err=True)


@outbox.command("requeue")
@_outbox_option
@click.option("--id", "ids", multiple=True, type=int, help="Dead letter id (repeat); all if none.")
def outbox_requeue(url: str | None, namespace: str | None, ids: tuple[int, ...]) -> None:
    """Move dead letters back to the outbox to be sent again."""
    _looked_at(lambda: _opened(open_outbox, url, "outbox", namespace)).close()  # an outbox
    where = _looked_at(lambda: url or _default_url("outbox", namespace))
    box = _looked_at(lambda: open_outbox(where))
    try:
        moved = OutboxAdmin(box, SYSTEM_CLOCK).requeue(list(ids) if ids else None)
    finally:
        box.close()
    click.echo(f"requeued {moved} record(s)")


@main.command("inspect")
@click.option(
    "--store",
    "url",
    default=None,
    show_default="the library's default store of the environment",
    help="Store URL, e.g. sqlite:////var/lib/app/stigg-cache.db",
)
@_namespace_option
@click.option("--customer", default=None, help="One customer (default: every snapshot).")
@click.option("--resource", default=None, help="The customer's resource, if any.")
@click.option("--policy", "policy_path", type=click.Path(exists=True, dir_okay=False))
def inspect(
    url: str | None,
    namespace: str | None,
    customer: str | None,
    resource: str | None,
    policy_path: str | None,
) -> None:
    """Snapshots held: age, staleness against the policy, signature state (read only).

    Signatures are verified with STIGG_CACHE_SIGNING_KEY (from the environment
    only: a key on the command line would show in the process list).
    """
    try:
        chosen = FallbackPolicy.from_file(policy_path) if policy_path else BUILTIN_POLICY
        keys = signing_keys(None)
    except StiggCacheError as error:
        click.echo(str(error), err=True)
        sys.exit(1)
    store = _looked_at(lambda: _opened(open_store, url, "store", namespace))
    verifier = SignedStore(store, keys) if keys else None
    try:
        wanted = (
            [snapshot_key(customer, resource)]
            if customer is not None
            else sorted(store.keys(SNAPSHOT_PREFIX))
        )
        lines = [_describe(store, verifier, key, chosen) for key in wanted]
    except StiggCacheError as error:
        click.echo(f"cannot read the store: {error}", err=True)
        sys.exit(1)
    finally:
        store.close()
    for line in lines:
        click.echo(line)
    click.echo(f"{len(lines)} snapshot(s)", err=True)


def _describe(store: Store, verifier: SignedStore | None, key: str, chosen: FallbackPolicy) -> str:
    stored = store.get(key)
    if stored is MISSING:
        return f"{printable(key)}\tno snapshot"
    if verifier is not None:
        try:
            value, signature = verifier.verify(key, stored), "signature valid"
        except TamperedEntryError as error:
            return f"{printable(key)}\tTAMPERED: {error}"
    else:
        inner = signed_value(stored)
        value = stored if inner is None else inner
        signature = (
            "unsigned" if inner is None else "signed (set STIGG_CACHE_SIGNING_KEY to verify)"
        )
    try:
        snapshot = decode_snapshot(value)
    except OutdatedEntryError:
        return (
            f"{printable(key)}\tOUTDATED: an earlier version's entry (the next check replaces it)"
        )
    except StiggCacheError as error:
        return f"{printable(key)}\tCORRUPT: {printable(str(error))}"
    features = f"{len(snapshot.entitlements)} features"
    return f"{_who(snapshot)}\t{_age(snapshot, chosen)}\t{features}\t{signature}"


def _who(snapshot: Snapshot) -> str:
    who = snapshot.customer_id + (f"/{snapshot.resource_id}" if snapshot.resource_id else "")
    return printable(who)


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """Text from a store or an outbox, for a terminal: control characters (line breaks,
    escape sequences) shown as ``\\xNN``, so an id cannot forge rows or drive the terminal."""
    return _CONTROL.sub(lambda found: f"\\x{ord(found.group()):02x}", text)


def _age(snapshot: Snapshot, chosen: FallbackPolicy) -> str:
    age = time.time() - snapshot.fetched_at
    budget = chosen.staleness
    if age <= budget.fresh_for_s:
        verdict = "fresh"
    elif age <= budget.max_staleness_s:
        verdict = f"stale (servable for {budget.max_staleness_s - age:.0f}s more)"
    else:
        verdict = "EXPIRED (older than max_staleness: not served)"
    return f"fetched {age:.0f}s ago, {verdict}"


main.add_command(chaos)
main.add_command(fake)
