"""report_event / report_usage: validated, durable before return, never on the network."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from stigg_cache.outbox.records import Receipt, RecordKind
from stigg_cache.outbox.sqlite import SqliteOutbox
from stigg_cache.testing import ManualClock
from stigg_cache.testing.fake import FakeMode, FakeStigg, metered
from tests.conftest import MakeClient

GOOD_EVENT = {"customer_id": "acme", "event_name": "api.request", "idempotency_key": "e-1"}


@pytest.mark.parametrize(
    ("event", "error", "message"),
    [
        ({**GOOD_EVENT, "customer_id": ""}, ValueError, "customer_id must be a non-empty"),
        ({**GOOD_EVENT, "event_name": 7}, TypeError, "event_name must be a str"),
        ({**GOOD_EVENT, "dimensions": {"n": [1]}}, TypeError, "dimension 'n'"),
        ({**GOOD_EVENT, "dimensions": {"n": float("inf")}}, ValueError, "finite"),
        ({**GOOD_EVENT, "timestamp": datetime(2030, 1, 1)}, ValueError, "timezone"),  # noqa: DTZ001
        ({**GOOD_EVENT, "timestamp": "yesterday"}, ValueError, "ISO-8601"),
        ({**GOOD_EVENT, "colour": "red"}, ValueError, "unknown event fields"),
        (
            {**GOOD_EVENT, "dimensions": {f"blob{n}": "é" * 5_000 for n in range(100)}},
            ValueError,
            "at most 1000000 bytes",
        ),
        ("not a dict", TypeError, "each event must be a dict"),
    ],
)
def test_invalid_event_is_refused_and_nothing_is_enqueued(
    fake: FakeStigg, make_client: MakeClient, event: object, error: type[Exception], message: str
) -> None:
    fake.set_mode(FakeMode.DOWN)
    client = make_client()
    with pytest.raises(error, match=message):
        client.report_event([{**GOOD_EVENT, "idempotency_key": "ok-1"}, event])  # type: ignore[list-item]
    assert client.outbox.count() == 0


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"value": "3"}, TypeError, "value must be a number"),
        ({"value": float("nan")}, ValueError, "finite"),
        ({"value": 2.0**40 + 0.5}, ValueError, "2\\^35"),
        ({"update_behavior": "ADD"}, ValueError, "'DELTA' or 'SET'"),
        ({"feature_id": None}, TypeError, "feature_id must be a str"),
    ],
)
def test_invalid_usage_is_refused(
    fake: FakeStigg,
    make_client: MakeClient,
    kwargs: dict[str, object],
    error: type[Exception],
    message: str,
) -> None:
    client = make_client()
    usage = {"customer_id": "acme", "feature_id": "api_calls", "value": 1, **kwargs}
    with pytest.raises(error, match=message):
        client.report_usage(**usage)  # type: ignore[arg-type]
    assert client.outbox.count() == 0


def test_records_are_durable_before_the_call_returns(
    fake: FakeStigg, make_client: MakeClient, tmp_path: Path
) -> None:
    fake.set_mode(FakeMode.DOWN)
    client = make_client()
    receipts = client.report_event([GOOD_EVENT, {"customer_id": "acme", "event_name": "login"}])
    receipt = client.report_usage(customer_id="acme", feature_id="api_calls", value=3)
    other = SqliteOutbox(
        tmp_path / "cache-outbox.db"
    )  # another connection, as another process would
    try:
        stored = {record.idempotency_key: record for record, _ in other.unsettled()}
    finally:
        other.close()
    assert receipts[0].idempotency_key == "e-1"
    generated = receipts[1].idempotency_key
    assert len(generated) == 36  # a uuid, returned to the caller
    assert set(stored) == {"e-1", generated, receipt.idempotency_key}
    assert stored[receipt.idempotency_key].kind is RecordKind.USAGE
    assert fake.account.receipts == {}  # nothing went to the network on the caller's thread


def test_timestamps_are_fixed_at_enqueue(fake: FakeStigg, make_client: MakeClient) -> None:
    fake.set_mode(FakeMode.DOWN)
    client = make_client()
    # A day ago, to the second: within Stigg's 7-day window whenever the suite runs.
    moment = (datetime.now(UTC) - timedelta(days=1)).replace(microsecond=0)
    client.report_event([{**GOOD_EVENT, "timestamp": moment}])
    client.report_event([{**GOOD_EVENT, "idempotency_key": "e-2"}])
    fake.set_mode(FakeMode.UP)
    assert client.flush(timeout=10).drained
    stamps = {e["idempotencyKey"]: e["timestamp"] for e in fake.account.events}
    assert stamps["e-1"] == moment.isoformat()
    assert datetime.fromisoformat(stamps["e-2"]) < datetime.now(UTC)


def test_same_key_same_payload_is_a_duplicate_not_a_second_record(
    fake: FakeStigg, make_client: MakeClient
) -> None:
    fake.set_mode(FakeMode.DOWN)
    client = make_client()
    moment = datetime.now(UTC) - timedelta(minutes=1)
    first = client.report_event([{**GOOD_EVENT, "timestamp": moment}])
    again = client.report_event([{**GOOD_EVENT, "timestamp": moment}])
    assert (first[0].duplicate, again[0].duplicate) == (False, True)
    assert client.outbox.count() == 1


def test_reusing_a_key_for_different_usage_is_refused(
    fake: FakeStigg, make_client: MakeClient
) -> None:
    fake.set_mode(FakeMode.DOWN)
    client = make_client()
    client.report_usage(customer_id="acme", feature_id="api_calls", value=1, idempotency_key="k")
    with pytest.raises(ValueError, match="already used for different usage"):
        client.report_usage(
            customer_id="acme", feature_id="api_calls", value=2, idempotency_key="k"
        )
    assert client.outbox.count() == 1


def test_bulk_usage_is_all_or_nothing(fake: FakeStigg, make_client: MakeClient) -> None:
    client = make_client()
    fake.set_mode(FakeMode.DOWN)
    with pytest.raises(ValueError, match="update_behavior"):
        client.report_usage_bulk(
            [
                {"customer_id": "acme", "feature_id": "api_calls", "value": 1},
                {
                    "customer_id": "acme",
                    "feature_id": "api_calls",
                    "value": 1,
                    "update_behavior": "X",
                },
            ]
        )
    assert client.outbox.count() == 0
    receipts = client.report_usage_bulk(
        [{"customer_id": "acme", "feature_id": "api_calls", "value": 1}] * 3
    )
    assert len({r.idempotency_key for r in receipts}) == 3


def test_a_report_retried_without_its_stamp_is_its_first_receipt(
    fake: FakeStigg, make_client: MakeClient, clock: ManualClock
) -> None:
    """Issue 28 #8: a retry is stamped anew; the stamp was left to us, so the same key and
    usage is the first record again (not "different usage"), and Stigg gets it once."""
    client = make_client(clock=clock)
    event = {**GOOD_EVENT, "dimensions": {"timestamp": "dimension, not stamp"}}

    def report() -> list[Receipt]:
        usage = client.report_usage(
            customer_id="acme", feature_id="api_calls", value=3, idempotency_key="u"
        )
        return [usage, *client.report_event([event])]

    first = report()
    clock.advance(2.0)
    again = report()
    assert [(r.duplicate, s.duplicate) for r, s in zip(first, again, strict=True)] == [
        (False, True),
        (False, True),
    ]
    assert client.flush(timeout=10).drained
    assert fake.account.receipts == {"u": 1, GOOD_EVENT["idempotency_key"]: 1}


def test_the_same_key_for_two_customers_is_two_records(
    fake: FakeStigg, make_client: MakeClient
) -> None:
    fake.set_customer("beta", [metered("api_calls", limit=100, usage=0)])
    client = make_client()
    receipts = [
        client.report_usage(customer_id=c, feature_id="api_calls", value=1, idempotency_key="k")
        for c in ("acme", "beta")
    ]
    assert [(r.customer_id, r.duplicate) for r in receipts] == [("acme", False), ("beta", False)]
    assert client.flush(timeout=10).drained
    assert sorted(u["customerId"] for u in fake.account.usages) == ["acme", "beta"]
