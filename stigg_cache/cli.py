"""The ``stigg-cache`` command."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from stigg_cache._clock import SYSTEM_CLOCK
from stigg_cache._usage import open_outbox
from stigg_cache.errors import PolicyError, StiggCacheError
from stigg_cache.outbox.admin import OutboxAdmin
from stigg_cache.outbox.base import Outbox
from stigg_cache.policy.explain import explain, lint
from stigg_cache.policy.model import FallbackPolicy
from stigg_cache.stores import open_store


@click.group()
def main() -> None:
    """stigg-cache: resilient Stigg entitlement checks."""


@main.command("bench")
@click.option("--out", default="bench/results.json", show_default=True, help="JSON output.")
@click.option("--tiny", is_flag=True, help="Tiny sizes: a smoke run.")
def bench(out: str, tiny: bool) -> None:
    """Benchmarks: every figure a ratio against a baseline measured in the same run."""
    from stigg_cache.benchmarks import main as run_benchmarks  # noqa: PLC0415 - heavy, rarely used

    sys.exit(run_benchmarks(["--out", out, *(["--tiny"] if tiny else [])]))


@main.group()
def policy() -> None:
    """Validate and explain fallback.yaml."""


@policy.command("check")
@click.argument("file", type=click.Path(path_type=Path))
def policy_check(file: Path) -> None:
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
    for warning in lint(loaded):
        click.echo(f"warning: {warning}", err=True)


@policy.command("explain")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--customer", "customer_id", required=True, help="Customer id to check.")
@click.option("--feature", "feature_id", required=True, help="Feature id to check.")
@click.option("--resource", "resource_id", default=None, help="Resource id, if any.")
@click.option("--store", "store_url", default=None, help="Store URL holding snapshots.")
def policy_explain(
    file: Path, customer_id: str, feature_id: str, resource_id: str | None, store_url: str | None
) -> None:
    """Which tier and rule would answer a check right now, and why."""
    try:
        loaded = FallbackPolicy.from_file(file)
        store = None if store_url is None else open_store(store_url)
    except StiggCacheError as error:
        click.echo(str(error), err=True)
        sys.exit(1)
    try:
        for line in explain(
            loaded,
            customer_id=customer_id,
            feature_id=feature_id,
            resource_id=resource_id,
            store=store,
        ):
            click.echo(line)
    finally:
        if store is not None:
            store.close()


@main.group()
def outbox() -> None:
    """Inspect buffered usage and dead letters."""


def _open_outbox(url: str) -> Outbox:
    try:
        return open_outbox(url)
    except StiggCacheError as error:
        click.echo(str(error), err=True)
        sys.exit(1)


_OUTBOX_HELP = "Outbox URL, e.g. sqlite:///var/lib/app/stigg-cache-outbox.db"


@outbox.command("status")
@click.option("--store", "url", required=True, help=_OUTBOX_HELP)
def outbox_status(url: str) -> None:
    """Pending, leased, sent and dead-lettered counts."""
    box = _open_outbox(url)
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
@click.option("--store", "url", required=True, help=_OUTBOX_HELP)
@click.option("--limit", default=100, show_default=True)
def outbox_dead_letters(url: str, limit: int) -> None:
    """List dead letters with the reason each was set aside."""
    box = _open_outbox(url)
    try:
        letters = OutboxAdmin(box, SYSTEM_CLOCK).dead_letters(limit)
    finally:
        box.close()
    for letter in letters:
        record = letter.record
        click.echo(
            f"{letter.id}\t{record.kind.value}\t{record.customer_id}\t{record.name}\t"
            f"{record.idempotency_key}\t{letter.reason}"
        )
    click.echo(f"{len(letters)} dead letter(s)", err=True)


@outbox.command("requeue")
@click.option("--store", "url", required=True, help=_OUTBOX_HELP)
@click.option("--id", "ids", multiple=True, type=int, help="Dead letter id (repeat); all if none.")
def outbox_requeue(url: str, ids: tuple[int, ...]) -> None:
    """Move dead letters back to the outbox to be sent again."""
    box = _open_outbox(url)
    try:
        moved = OutboxAdmin(box, SYSTEM_CLOCK).requeue(list(ids) if ids else None)
    finally:
        box.close()
    click.echo(f"requeued {moved} record(s)")
