"""The ``stigg-cache`` command."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from stigg_cache.errors import PolicyError, StiggCacheError
from stigg_cache.policy.explain import explain, lint
from stigg_cache.policy.model import FallbackPolicy
from stigg_cache.stores import open_store


@click.group()
def main() -> None:
    """stigg-cache: resilient Stigg entitlement checks."""


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
