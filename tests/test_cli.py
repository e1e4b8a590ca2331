"""The stigg-cache command: policy check and policy explain."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from stigg_cache import ResilientClient
from stigg_cache.cli import main
from stigg_cache.models import Snapshot
from stigg_cache.outbox.records import RecordKind, event_record
from stigg_cache.outbox.sqlite import SqliteOutbox
from stigg_cache.stores import open_store
from stigg_cache.stores._codec import encode_snapshot, snapshot_key
from stigg_cache.testing.fake import FakeStigg
from tests.conftest import API_KEY

EXAMPLE = Path(__file__).parent.parent / "examples" / "fallback.yaml"


def test_policy_check_accepts_the_example_without_warnings() -> None:
    result = CliRunner().invoke(main, ["policy", "check", str(EXAMPLE)])
    assert result.exit_code == 0, result.output
    assert "valid (version" in result.output
    assert "warning" not in result.output


def test_policy_check_fails_with_every_error(tmp_path: Path) -> None:
    bad = tmp_path / "fallback.yaml"
    bad.write_text("version: 2\ncolour: red\n")
    result = CliRunner().invoke(main, ["policy", "check", str(bad)])
    assert result.exit_code == 1
    assert f"{bad}:2: colour: unknown key" in result.output
    assert f"{bad}:1: version: must be 1" in result.output


def test_policy_check_warns_when_only_the_catch_all_grants(tmp_path: Path) -> None:
    loose = tmp_path / "fallback.yaml"
    loose.write_text("version: 1\ndefault: {has_access: true}\n")
    result = CliRunner().invoke(main, ["policy", "check", str(loose)])
    assert result.exit_code == 0
    assert "granted during an outage only by the catch-all" in result.output
    bare = tmp_path / "bare.yaml"
    bare.write_text("version: 1\n")
    assert (
        "ALLOWED during an outage"
        in CliRunner().invoke(main, ["policy", "check", str(bare)]).output
    )


def test_policy_explain_without_a_store_names_the_fallback_rule() -> None:
    result = CliRunner().invoke(
        main, ["policy", "explain", str(EXAMPLE), "--customer", "trial-1", "--feature", "sso"]
    )
    assert result.exit_code == 0, result.output
    assert "unreachable -> POLICY via trials-no-sso: has_access=False" in result.output


def test_policy_explain_reads_the_snapshot_in_the_store(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/cache.db"
    with FakeStigg(api_key=API_KEY) as fake:
        from stigg_cache.testing.fake import boolean

        fake.set_customer("acme", [boolean("sso")])
        with ResilientClient(None, api_key=API_KEY, base_url=fake.url, store=url) as client:
            client.get_boolean_entitlement(customer_id="acme", feature_id="sso")
    args = ["policy", "explain", str(EXAMPLE), "--customer", "acme", "--feature", "sso"]
    result = CliRunner().invoke(main, [*args, "--store", url])
    assert result.exit_code == 0, result.output
    assert "sso granted" in result.output
    assert "-> CACHE" in result.output
    cold = CliRunner().invoke(
        main, [*args[:3], "--customer", "nobody", "--feature", "sso", "--store", url]
    )
    assert "no snapshot held" in cold.output
    assert "POLICY via" not in cold.output
    assert "DEFAULT via features.sso" in cold.output


def test_outbox_commands_show_and_requeue_dead_letters(tmp_path: Path) -> None:
    from stigg_cache.testing.fake import FakeMode

    with FakeStigg(api_key=API_KEY) as fake:
        fake.account.rejected_customers.add("mallory")
        store = f"sqlite:///{tmp_path}/cache.db"
        with ResilientClient(None, api_key=API_KEY, base_url=fake.url, store=store) as client:
            client.report_event(
                [{"customer_id": "mallory", "event_name": "e", "idempotency_key": "m1"}]
            )
            client.flush(timeout=5)  # Stigg refuses it: dead-lettered
            fake.set_mode(FakeMode.DOWN)
            client.report_event(
                [{"customer_id": "acme", "event_name": "e", "idempotency_key": "a1"}]
            )
            client.flush(timeout=1)
        outbox = f"sqlite:///{tmp_path}/cache-outbox.db"
        runner = CliRunner()
        status = runner.invoke(main, ["outbox", "status", "--store", outbox])
        assert status.exit_code == 0, status.output
        assert "pending 1" in status.output
        assert "dead letters 1" in status.output
        letters = runner.invoke(main, ["outbox", "dead-letters", "--store", outbox])
        assert "mallory" in letters.output
        assert "m1" in letters.output
        assert "400" in letters.output
        requeued = runner.invoke(main, ["outbox", "requeue", "--store", outbox])
        assert "requeued 1 record(s)" in requeued.output
        assert "pending 2" in runner.invoke(main, ["outbox", "status", "--store", outbox]).output


def test_inspect_lists_snapshots_with_age_staleness_and_signature(
    fake: FakeStigg, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = "k" * 32
    store = f"sqlite:///{tmp_path}/cache.db"
    fake.set_customer("globex", [])
    with ResilientClient(
        None, api_key=API_KEY, base_url=fake.url, store=store, signing_key=key, outbox="memory://"
    ) as client:
        for customer in ("acme", "globex"):
            client.get_boolean_entitlement(customer_id=customer, feature_id="sso")
    runner = CliRunner()
    unverified = runner.invoke(main, ["inspect", "--store", store])
    assert unverified.exit_code == 0, unverified.output
    assert re.search(
        r"acme\tfetched \ds ago, fresh\t4 features\tsigned \(set STIGG_CACHE_SIGNING_KEY to verify\)",
        unverified.output,
    )
    assert "globex\t" in unverified.output

    monkeypatch.setenv("STIGG_CACHE_SIGNING_KEY", key)
    policy = tmp_path / "fallback.yaml"
    policy.write_text("version: 1\nstaleness: {fresh_for: 0s, max_staleness: 1h}\n")
    one = runner.invoke(
        main, ["inspect", "--store", store, "--customer", "acme", "--policy", str(policy)]
    )
    assert one.exit_code == 0, one.output
    assert re.search(
        r"acme\tfetched \ds ago, stale \(servable for 3\d{3}s more\)\t4 features\tsignature valid",
        one.output,
    )

    monkeypatch.setenv("STIGG_CACHE_SIGNING_KEY", "another key entirely")
    forged = runner.invoke(main, ["inspect", "--store", store, "--customer", "acme"])
    assert "TAMPERED: snapshot entry is signed by a key not configured here" in forged.output
    assert key not in unverified.output + one.output + forged.output


def test_inspect_says_when_there_is_no_snapshot(tmp_path: Path) -> None:
    open_store(f"sqlite:///{tmp_path}/c.db").close()
    result = CliRunner().invoke(
        main, ["inspect", "--store", f"sqlite:///{tmp_path}/c.db", "--customer", "nobody"]
    )
    assert result.exit_code == 0
    assert "no snapshot" in result.output


def test_inspect_tells_an_earlier_versions_entry_from_a_corrupt_one(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path}/c.db"
    opened = open_store(store)
    snapshot = Snapshot("acme", None, {}, 1.0)
    opened.put(snapshot_key("acme", None), b"SCS3" + encode_snapshot(snapshot)[4:])
    opened.put(snapshot_key("globex", None), encode_snapshot(snapshot)[:-2])
    opened.close()
    runner = CliRunner()
    old = runner.invoke(main, ["inspect", "--store", store, "--customer", "acme"])
    assert "OUTDATED: an earlier version's entry" in old.output
    bad = runner.invoke(main, ["inspect", "--store", store, "--customer", "globex"])
    assert "CORRUPT: snapshot entry is truncated" in bad.output


def test_ids_with_line_breaks_and_escapes_print_as_one_inert_row(tmp_path: Path) -> None:
    evil = "m1\nforged-row\t\x1b[31mred\x1b]0;title\x07"
    box = SqliteOutbox(tmp_path / "outbox.db")
    box.enqueue(
        [event_record({"customer_id": evil, "event_name": "e", "idempotency_key": evil}, 1.0)],
        1.0,
    )
    (claimed,) = box.claim(RecordKind.EVENT, 1, "a", now=1.0, lease_s=30)
    box.settle(dead=[claimed.id], owner="a", now=1.0, reason=f"refused: {evil}")
    box.close()
    result = CliRunner().invoke(
        main, ["outbox", "dead-letters", "--store", f"sqlite:///{tmp_path}/outbox.db"]
    )
    rows = [line for line in result.output.splitlines() if line.startswith("1\t")]
    assert len(rows) == 1
    assert "\x1b" not in result.output
    assert "\x07" not in result.output
    assert "m1\\x0aforged-row\\x09\\x1b[31mred" in rows[0]
    assert len(rows[0].split("\t")) == 6  # id, kind, customer, name, key, reason
