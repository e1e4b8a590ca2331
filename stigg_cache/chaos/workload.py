"""The workload of a chaos run: threads issuing checks and usage reports at set rates.

Every call goes into the :class:`~stigg_cache.chaos.history.History` when it is
made and again when it returns, with what the invariants need: a check's
tier, age, staleness and policy version; a report's keys and exact payloads.
Threads stop by themselves at ``stop()`` (bounded join) and never outlive a run.
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import attrs

from stigg_cache.chaos.history import History, Outcome
from stigg_cache.client import ResilientClient
from stigg_cache.outbox.records import event_record

JOIN_S = 5.0


@attrs.frozen
class Workload:
    """How hard a run pushes (rates are totals over all threads)."""

    threads: int = 4
    checks_per_s: float = 200.0
    reports_per_s: float = 20.0
    events_per_report: int = 5
    customers: int = 20
    features: tuple[str, ...] = ("sso", "api_calls")


class Driver:
    """Runs a :class:`Workload` against whichever client ``client()`` returns now."""

    def __init__(
        self,
        client: Callable[[], ResilientClient],
        workload: Workload,
        history: History,
        *,
        seed: int = 0,
    ) -> None:
        """Nothing runs until :meth:`start`."""
        self._client = client
        self._workload = workload
        self._history = history
        self._stop = threading.Event()
        self._keys = itertools.count()
        self._seed = seed
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        """Start the threads."""
        for index in range(self._workload.threads):
            thread = threading.Thread(
                target=self._run,
                args=(random.Random(self._seed + index),),  # noqa: S311 - load, not secrets
                daemon=True,
            )
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        """Stop and wait for the threads (a call in flight finishes or is left unknown)."""
        self._stop.set()
        for thread in self._threads:
            thread.join(JOIN_S)

    def _run(self, rng: random.Random) -> None:
        load = self._workload
        per_thread = (load.checks_per_s + load.reports_per_s) / load.threads
        report_share = load.reports_per_s / (load.checks_per_s + load.reports_per_s)
        while not self._stop.wait(rng.expovariate(per_thread)):
            customer = f"customer-{rng.randrange(load.customers)}"
            if rng.random() < report_share:
                self._report(customer, load.events_per_report)
            else:
                self._check(customer, rng.choice(load.features))

    def _check(self, customer: str, feature: str) -> None:
        operation = self._history.invoke("check", time.monotonic(), customer=customer)
        try:
            result = self._client().get_boolean_entitlement(
                customer_id=customer, feature_id=feature
            )
        except Exception as error:
            self._history.end(operation, Outcome.FAILED, time.monotonic(), error=repr(error))
            return
        decision = result.decision
        self._history.end(
            operation,
            Outcome.OK,
            time.monotonic(),
            source=decision.source.value,
            age_s=decision.age_s,
            stale=decision.stale,
            policy_version=decision.policy_version,
        )

    def _report(self, customer: str, count: int) -> None:
        stamp = datetime.now(UTC)
        events: list[dict[str, Any]] = [
            {
                "customer_id": customer,
                "event_name": "api.request",
                "idempotency_key": f"chaos-{next(self._keys)}",
                "timestamp": stamp,
            }
            for _ in range(count)
        ]
        records = {e["idempotency_key"]: event_record(e, 0.0).payload for e in events}
        operation = self._history.invoke("report", time.monotonic(), records=records)
        try:
            self._client().report_event(events)
        except Exception as error:
            self._history.end(operation, Outcome.FAILED, time.monotonic(), error=repr(error))
            return
        self._history.end(operation, Outcome.OK, time.monotonic())
