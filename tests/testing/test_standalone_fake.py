"""`stigg-cache fake`: the fake Stigg as a process of its own, and the [testing] extra.

The command runs as a user runs it (the installed entry point, a subprocess), is
answered by the official REST SDK over loopback, and stops on SIGTERM or Ctrl-C.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import pytest
import stigg
from click.testing import CliRunner
from stigg.types.v1.customer_retrieve_entitlements_response import DataEntitlementFeature

from stigg_cache import ResilientClient, Source
from stigg_cache.cli import main
from stigg_cache.testing.standalone import (
    DEMO_CUSTOMERS,
    LOCAL_API_KEY,
    account_from,
    load_account,
)

ENTRY_POINT = Path(sys.executable).parent / "stigg-cache"
CUSTOMERS_YAML = """\
customers:
  globex:
    sso: false
    seats: 25
    api_calls: {limit: 500, usage: 12}
    storage: {limit: null}
    models: [gpt-4, claude]
meters:
  api.request: api_calls
"""
# Scripts run where graphql-core cannot be imported, as outside the dev install.
_NO_GRAPHQL = textwrap.dedent(
    """
    import importlib.abc, sys

    class NoGraphql(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] == "graphql":
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, NoGraphql())
    """
)
_CLI_WITHOUT_GRAPHQL = _NO_GRAPHQL + textwrap.dedent(
    """
    from stigg_cache.cli import main
    main(sys.argv[1:], prog_name="stigg-cache")
    """
)


class Running:
    """A `stigg-cache fake` process and what it announced."""

    def __init__(self, command: list[str]) -> None:
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        assert self.process.stdout is not None
        self.announced: dict[str, str] = {}
        for line in self.process.stdout:  # ends at EOF if the process dies first
            name, _, value = line.strip().partition("  ")
            self.announced[name] = value.strip()
            if line.startswith("  export "):
                self.announced["export"] = line.strip()
                break
        assert "REST base URL" in self.announced, self.stop()

    @property
    def url(self) -> str:
        return self.announced["REST base URL"]

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> tuple[int, str, str]:
        """Send ``sig``; the exit code and the rest of stdout and stderr."""
        self.process.send_signal(sig)
        out, err = self.process.communicate(timeout=30)
        return self.process.returncode, out, err


class Feature(NamedTuple):
    """What the REST SDK parsed of one feature entitlement."""

    feature_type: str
    is_granted: bool
    usage_limit: float | None
    current_usage: float | None
    has_unlimited_usage: bool | None
    reset_period: str | None
    model_extra: dict[str, Any] | None


def _features(entitlements: Sequence[object]) -> dict[str, Feature]:
    found = {}
    for item in entitlements:
        assert isinstance(item, DataEntitlementFeature)
        assert item.feature is not None
        found[item.feature.id] = Feature(
            item.feature.feature_type,
            item.is_granted,
            item.usage_limit,
            item.current_usage,
            item.has_unlimited_usage,
            item.reset_period,
            item.model_extra,
        )
    return found


@pytest.fixture
def running() -> Iterator[list[Running]]:
    started: list[Running] = []
    yield started
    for fake in started:
        if fake.process.poll() is None:
            fake.process.kill()
            fake.process.communicate(timeout=30)


def test_the_command_serves_a_customers_file_to_the_rest_sdk_until_sigterm(
    tmp_path: Path, running: list[Running]
) -> None:
    customers = tmp_path / "customers.yaml"
    customers.write_text(CUSTOMERS_YAML)
    fake = Running([str(ENTRY_POINT), "fake", "--port", "0", "--customers", str(customers)])
    running.append(fake)
    assert fake.url.startswith("http://127.0.0.1:")
    assert fake.announced["GraphQL"] == f"{fake.url}/graphql"
    assert fake.announced["Edge"] == f"{fake.url}/edge"
    assert fake.announced["API key"] == LOCAL_API_KEY
    assert fake.announced["customers"] == f"globex ({customers})"
    with stigg.Stigg(api_key=LOCAL_API_KEY, base_url=fake.url, max_retries=0) as sdk:
        answer = sdk.v1.customers.retrieve_entitlements("globex").data
        sdk.v1.events.report(  # the file's meter counts it into api_calls
            events=[{"customer_id": "globex", "event_name": "api.request", "idempotency_key": "e"}]
        )
        after = sdk.v1.customers.retrieve_entitlements("globex").data
    found = _features(answer.entitlements)
    assert found["sso"].is_granted is False
    assert (found["seats"].feature_type, found["seats"].usage_limit) == ("NUMBER", 25)
    assert (found["api_calls"].usage_limit, found["api_calls"].current_usage) == (500, 12)
    assert found["api_calls"].reset_period == "MONTH"
    assert _features(after.entitlements)["api_calls"].current_usage == 13
    assert found["storage"].has_unlimited_usage is True
    assert found["models"].feature_type == "ENUM"
    assert (found["models"].model_extra or {})["enumValues"] == ["gpt-4", "claude"]
    refused = httpx.get(f"{fake.url}/api/v1/customers/globex/entitlements", timeout=10)
    assert refused.status_code == 401  # the key it announced is the key it requires
    code, out, err = fake.stop(signal.SIGTERM)
    assert (code, err) == (0, "")
    assert out == "fake Stigg stopped after 4 request(s)\n"
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{fake.url}/api/v1/customers/globex/entitlements", timeout=10)


def test_the_demo_account_serves_a_resilient_client_and_ctrl_c_stops_it(
    running: list[Running],
) -> None:
    fake = Running([str(ENTRY_POINT), "fake", "--port", "0"])
    running.append(fake)
    assert fake.announced["customers"] == "acme, newcorp (the demo account)"
    export = f"export STIGG_BASE_URL={fake.url} STIGG_API_KEY={LOCAL_API_KEY}"
    assert fake.announced["export"] == export
    with ResilientClient(
        None, api_key=LOCAL_API_KEY, base_url=fake.url, store="memory://"
    ) as client:
        sso = client.get_boolean_entitlement(customer_id="acme", feature_id="sso")
        calls = client.get_metered_entitlement(customer_id="acme", feature_id="api_calls")
        newcorp = client.get_boolean_entitlement(customer_id="newcorp", feature_id="sso")
    assert (sso.has_access, sso.decision.source) == (True, Source.LIVE)
    assert (calls.current_usage, calls.usage_limit) == (420, 1000)
    assert (newcorp.has_access, newcorp.decision.source) == (False, Source.LIVE)
    code, out, _ = fake.stop(signal.SIGINT)
    assert code == 0
    assert "fake Stigg stopped after" in out


def test_the_command_without_graphql_core_names_the_extra_and_keeps_answering(
    running: list[Running],
) -> None:
    fake = Running([sys.executable, "-c", _CLI_WITHOUT_GRAPHQL, "fake", "--port", "0"])
    running.append(fake)
    hint = "pip install 'stigg-cache[testing]'"
    assert fake.announced["GraphQL"].startswith("unavailable: graphql is not importable")
    assert hint in fake.announced["GraphQL"]
    query = {"query": "query { entitlementsState { __typename } }"}
    headers = {"X-API-KEY": LOCAL_API_KEY}
    with httpx.Client(base_url=fake.url, headers=headers, timeout=10) as http:
        answers = [http.post("/graphql", json=query) for _ in range(3)]  # answered, not dropped
        edge = http.get("/edge/v1/c/acme/entitlements-state.json")
    for answer in answers:
        assert answer.status_code == 200
        (error,) = answer.json()["errors"]
        assert hint in error["message"]
        assert "graphql-core" in error["message"]
    assert edge.status_code == 200  # the Edge JSON needs no GraphQL parser
    assert edge.json()["data"]["entitlementsState"]["entitlements"]
    code, _, err = fake.stop()
    assert code == 0
    assert "Traceback" not in err
    assert err.count("stigg_cache.testing_extra_missing") == 1  # logged once, not per request
    assert hint in err


def test_without_graphql_core_graphql_url_and_the_endpoint_name_the_extra() -> None:
    script = _NO_GRAPHQL + textwrap.dedent(
        """
        import httpx
        from stigg_cache.testing.fake import FakeStigg
        with FakeStigg() as fake:
            print("EDGE", fake.edge_url)
            try:
                fake.graphql_url
            except ImportError as error:
                print("ERROR", error)
            try:
                answer = httpx.post(fake.url + "/graphql", json={"query": "{ a }"}, timeout=10)
                print("ANSWER", answer.status_code, answer.json()["errors"][0]["message"])
            except httpx.HTTPError as error:
                print("ANSWER", type(error).__name__, error)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    lines = dict(line.split(" ", 1) for line in done.stdout.splitlines())
    assert lines["EDGE"].endswith("/edge")
    assert lines["ERROR"].startswith("graphql is not importable (No module named 'graphql')")
    assert lines["ERROR"].endswith(
        "this needs graphql-core; install it with: pip install 'stigg-cache[testing]'"
    )
    assert lines["ANSWER"].startswith("200 the fake Stigg's GraphQL endpoint cannot answer: ")
    assert lines["ANSWER"].endswith("pip install 'stigg-cache[testing]'")


def test_a_port_in_use_is_a_usage_error_that_says_what_to_do() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(main, ["fake", "--port", str(port)])
    assert result.exit_code == 2
    assert f"cannot listen on 127.0.0.1:{port} (Address already in use)" in result.output
    assert "--port 0 for any free one" in result.output


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("customers: [acme]\n", "customers: expected a mapping, got list"),
        ("clients: {}\n", "unknown key(s) ['clients']; known: ['customers', 'meters']"),
        ("customers: {acme: {sso: maybe}}\n", "customers.acme.sso: expected true/false, a number"),
        ("customers: {acme: {calls: {limit: -1}}}\n", "customers.acme.calls: expected"),
        ("customers: {acme: {calls: {limit: 5, used: 1}}}\n", "customers.acme.calls: expected"),
        ("meters: {api.request: [a, b]}\n", "meters.api.request: name the metered feature"),
        ("customers: {acme: [oops\n", "cannot be read as YAML or JSON"),
    ],
)
def test_a_bad_customers_file_is_a_usage_error_naming_the_place(
    tmp_path: Path, text: str, message: str
) -> None:
    customers = tmp_path / "customers.yaml"
    customers.write_text(text)
    result = CliRunner().invoke(main, ["fake", "--customers", str(customers)])
    assert result.exit_code == 2
    assert f"{customers}: " in result.output
    assert message in result.output


def test_a_missing_customers_file_says_so(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["fake", "--customers", str(tmp_path / "none.yaml")])
    assert result.exit_code == 2
    assert "none.yaml: cannot be read as YAML or JSON: [Errno 2] No such file" in result.output


def test_json_customers_files_and_the_demo_account_load_alike(tmp_path: Path) -> None:
    customers = tmp_path / "customers.json"
    customers.write_text(
        '{"customers": {"acme": {"sso": true, "api_calls": {"limit": 1000, "usage": 420}}}}'
    )
    from_json = load_account(customers)
    demo = account_from(DEMO_CUSTOMERS)
    assert demo.customer_ids() == ["acme", "newcorp"]
    shown = [account.entitlements("acme", None)["entitlements"] for account in (from_json, demo)]
    for entitlements in shown:
        for item in entitlements:
            item.pop("usagePeriodStart", None)  # the monthly period is computed from now
            item.pop("usagePeriodEnd", None)
    assert shown[0] == shown[1]


def test_the_docs_customers_example_loads(tmp_path: Path) -> None:
    readme = (Path(__file__).parents[2] / "docs" / "testing.md").read_text()
    example = readme.split("`customers.yaml` (or JSON):\n\n```yaml\n", 1)[1].split("```", 1)[0]
    customers = tmp_path / "customers.yaml"
    customers.write_text(example)
    account = load_account(customers)
    assert account.customer_ids() == ["acme", "newcorp"]
    kinds = {
        e["feature"]["id"]: e["feature"]["featureType"]
        for e in account.entitlements("acme", None)["entitlements"]
    }
    assert kinds == {"sso": "BOOLEAN", "seats": "NUMBER", "api_calls": "NUMBER", "models": "ENUM"}
    account.report_events(
        {
            "events": [
                {
                    "customerId": "acme",
                    "eventName": "api.request",
                    "idempotencyKey": "k",
                    "timestamp": "2024-01-01T00:00:00Z",
                }
            ]
        }
    )
    assert account.usage_of("acme", "api_calls") == 421
