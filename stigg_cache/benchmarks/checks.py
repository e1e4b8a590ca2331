"""Rows 1-3, 8 and 11: warm checks against a dict and LaunchDarkly, on threads, and the SDK."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path

from stigg_cache.benchmarks._common import (
    API_KEY,
    CUSTOMERS,
    EVERY,
    FEATURES,
    Row,
    Sizes,
    Wanted,
    _ids,
    _interleaved,
    _on_threads,
    _row,
    _timed,
    _warm_client,
)
from stigg_cache.client import ResilientClient
from stigg_cache.models import BooleanEntitlement, Decision, Source
from stigg_cache.testing.fake import FakeStigg


def bench_checks(sizes: Sizes, tmp: Path, wanted: Wanted = EVERY) -> list[Row]:
    """Rows 1, 2, 3, 8, 11 (those ``wanted``): warm checks against their baselines."""
    rows: list[Row] = []
    ids = _ids(sizes.ops)
    with _warm_client(tmp) as (client, fake):
        check = client.get_boolean_entitlement

        def ours(i: int) -> object:
            customer, feature = ids[i]
            return check(customer_id=customer, feature_id=feature)

        table = dict.fromkeys(ids, True)
        decision = Decision(Source.CACHE, 1.0, stale=False)

        def baseline(i: int) -> object:
            customer, feature = ids[i]
            return BooleanEntitlement(
                customer_id=customer,
                feature_id=feature,
                resource_id=None,
                has_access=table[(customer, feature)],
                access_denied_reason=None,
                decision=decision,
            )

        if wanted(1):
            mine, theirs = _interleaved(
                _timed(ours, sizes.ops), _timed(baseline, sizes.ops), sizes.rounds
            )
            rows.append(
                _row(1, "warm boolean check (L1 hit)", mine, theirs, "us", "<= 2.5x",
                     lambda r: r <= 2.5)
            )  # fmt: skip
        if wanted(2):
            rows.append(_launchdarkly_row(sizes, ids, _timed(ours, sizes.ops)))
        if wanted(3):
            rows.append(_metered_row(client, sizes, _timed(ours, sizes.ops)))
        if wanted(8):
            rows.append(_threads_row(ours, sizes))
        if wanted(11):
            rows.append(_sdk_row(client, fake, sizes))
    return rows


def _launchdarkly_row(sizes: Sizes, ids: list[tuple[str, str]], ours: Callable[[], float]) -> Row:
    import ldclient  # noqa: PLC0415 - the bench extra
    from ldclient import Context  # noqa: PLC0415
    from ldclient.config import Config  # noqa: PLC0415
    from ldclient.integrations import Files  # noqa: PLC0415

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "flags.json"
        flags = {
            f"flag-{n}": {
                "key": f"flag-{n}",
                "on": True,
                "variations": [False, True],
                "fallthrough": {"variation": 1},
                "offVariation": 0,
                "version": 1,
                "salt": "s",
                "targets": [],
                "rules": [],
            }
            for n in range(FEATURES)
        }
        path.write_text(json.dumps({"flags": flags}))
        ld = ldclient.client.LDClient(
            Config(
                "sdk-key-bench",
                update_processor_class=Files.new_data_source(paths=[str(path)]),
                send_events=False,
            )
        )
        contexts = {customer: Context.builder(customer).build() for customer, _ in ids}
        pairs = [(contexts[customer], feature) for customer, feature in ids]

        def variation(i: int) -> object:
            context, feature = pairs[i]
            return ld.variation(feature, context, default=False)

        mine, theirs = _interleaved(ours, _timed(variation, len(pairs)), sizes.rounds)
        ld.close()  # type: ignore[no-untyped-call]
    return _row(
        2,
        "warm boolean check vs LaunchDarkly variation()",
        mine,
        theirs,
        "us",
        ">= 4x faster",
        lambda r: r >= 4,
        invert=True,
    )


def _metered_row(client: ResilientClient, sizes: Sizes, boolean_check: Callable[[], float]) -> Row:
    for customer in range(CUSTOMERS):
        client.report_usage(customer_id=f"c{customer}", feature_id="api_calls", value=1)
    check = client.get_metered_entitlement
    customers = [f"c{i % CUSTOMERS}" for i in range(sizes.ops)]  # made before, as the baseline's

    def metered_check(i: int) -> object:
        return check(customer_id=customers[i], feature_id="api_calls")

    mine, theirs = _interleaved(_timed(metered_check, sizes.ops), boolean_check, sizes.rounds)
    return _row(
        3, "warm metered check, local usage pending", mine, theirs, "us", "<= 2x", lambda r: r <= 2
    )


def _threads_row(check: Callable[[int], object], sizes: Sizes) -> Row:
    def throughput(threads: int) -> float:
        per_thread = sizes.ops // threads

        def work(_index: int) -> None:
            for i in range(per_thread):
                check(i)

        return _on_threads(threads, per_thread, work)

    eight, one = _interleaved(lambda: throughput(8), lambda: throughput(1), sizes.rounds)
    return _row(
        8,
        "checks from 8 threads (aggregate)",
        eight,
        one,
        "us",
        ">= 0.8x throughput",
        lambda r: r >= 0.8,
        invert=True,
    )


def _sdk_row(client: ResilientClient, fake: FakeStigg, sizes: Sizes) -> Row:
    import stigg  # noqa: PLC0415 - the rest extra

    sdk = stigg.Stigg(api_key=API_KEY, base_url=fake.url, max_retries=0)
    check = client.get_boolean_entitlement

    def ours(i: int) -> object:
        return check(customer_id=f"c{i % CUSTOMERS}", feature_id="flag-1")

    def direct(i: int) -> object:
        return sdk.v1.customers.retrieve_entitlements(f"c{i % CUSTOMERS}")

    mine, theirs = _interleaved(
        _timed(ours, sizes.ops), _timed(direct, sizes.sdk_calls), sizes.rounds
    )
    sdk.close()
    return _row(
        11,
        "warm check vs the official SDK on loopback",
        mine,
        theirs,
        "us",
        ">= 100x faster",
        lambda r: r >= 100,
        invert=True,
    )
