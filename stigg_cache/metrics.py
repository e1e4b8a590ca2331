"""Prometheus metrics for a client (``pip install 'stigg-cache[prometheus]'``).

    from prometheus_client import REGISTRY, start_http_server
    from stigg_cache.metrics import instrument

    instrument(client, REGISTRY)      # decisions and latency are counted from now on
    start_http_server(9464, addr="127.0.0.1")

Counting costs each check about a microsecond, so it is off until
:func:`instrument` turns it on; everything else is read from ``status()``
and the client's state when Prometheus scrapes, never on the hot path.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

try:
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
        Metric,
    )
    from prometheus_client.registry import Collector, CollectorRegistry
except ImportError as missing:  # pragma: no cover - exercised without the extra
    raise ImportError(
        "stigg_cache.metrics needs prometheus_client: pip install 'stigg-cache[prometheus]'"
    ) from missing

from stigg_cache.client import surface
from stigg_cache.models import ConnectionState

if TYPE_CHECKING:
    from stigg_cache.client import ResilientClient

# Seconds: a warm check takes microseconds, a live one milliseconds, none more than the budget.
LATENCY_BUCKETS_S = (1e-5, 5e-5, 1e-4, 5e-4, 1e-3, 5e-3, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0)


class ClientCollector(Collector):
    """Reads one client's decisions, latency, snapshots, outbox, breaker and policy."""

    def __init__(self, client: ResilientClient) -> None:
        """Start counting ``client``'s checks (a hook on its decisions)."""
        self._client = client
        self._lock = threading.Lock()
        self.decisions: Counter[tuple[str, str]] = Counter()
        self._buckets = [0] * (len(LATENCY_BUCKETS_S) + 1)
        self._latency_sum = 0.0
        self.stop = client.on_decision(self._observe)  # stop(): counting ends

    def _observe(self, kind: str, answer: Any, seconds: float) -> None:
        with self._lock:
            self.decisions[(answer.decision.source.value, kind)] += 1
            self._buckets[bisect.bisect_left(LATENCY_BUCKETS_S, seconds)] += 1
            self._latency_sum += seconds

    def collect(self) -> Iterator[Metric]:
        """One scrape: counters kept since :func:`instrument`, the rest read now."""
        client = self._client
        status = client.status()
        with self._lock:
            decisions = dict(self.decisions)
            buckets, latency_sum = list(self._buckets), self._latency_sum
        counter = CounterMetricFamily(
            "stigg_cache_decisions", "Checks answered, by tier and kind", labels=["tier", "kind"]
        )
        for (tier, kind), count in sorted(decisions.items()):
            counter.add_metric([tier, kind], count)
        yield counter
        cumulative, total = [], 0
        for bound, count in zip([*map(str, LATENCY_BUCKETS_S), "+Inf"], buckets, strict=True):
            total += count
            cumulative.append((bound, float(total)))
        yield HistogramMetricFamily(
            "stigg_cache_check_seconds",
            "Time a check took",
            buckets=cumulative,
            sum_value=latency_sum,
        )
        yield from _gauges(client, status)
        faults = CounterMetricFamily("stigg_cache_faults", "Faults seen", labels=["event"])
        for event, count in sorted(status.faults.items()):
            faults.add_metric([event], count)
        yield faults
        yield CounterMetricFamily(
            "stigg_cache_tamper_detections",
            "Snapshots that failed their signature",
            value=status.tamper_detections,
        )
        watcher = surface(client).watcher
        reloads, rejected = (0, 0) if watcher is None else (watcher.reloads, watcher.rejected)
        yield CounterMetricFamily(
            "stigg_cache_policy_reloads", "Policy edits applied", value=reloads
        )
        yield CounterMetricFamily(
            "stigg_cache_policy_errors", "Policy edits rejected", value=rejected
        )


def _gauges(client: ResilientClient, status: Any) -> Iterator[Metric]:
    now = time.time()
    held = list(surface(client).cache.l1.values())
    ages = [now - entry.snapshot.fetched_at for entry in held]
    values: list[tuple[str, str, float]] = [
        ("stigg_cache_snapshots_in_memory", "Snapshots held in L1", len(ages)),
        (
            "stigg_cache_snapshot_age_max_seconds",
            "Age of the oldest snapshot in L1",
            max(ages, default=0.0),
        ),
        ("stigg_cache_outbox_depth", "Usage records waiting for Stigg", status.outbox_depth),
        (
            "stigg_cache_outbox_oldest_age_seconds",
            "Age of the oldest waiting record",
            0.0 if status.outbox_oldest_at is None else now - status.outbox_oldest_at,
        ),
        ("stigg_cache_dead_letters", "Records Stigg refused", status.dead_letters),
        (
            "stigg_cache_breaker_open",
            "1 while the circuit breaker is open",
            float(status.breaker == "open"),
        ),
        ("stigg_cache_store_healthy", "1 while the store works", float(status.store_healthy)),
        (
            "stigg_cache_auth_refused",
            "1 while Stigg refuses the API key (sending paused, usage kept)",
            float(status.auth_error is not None),
        ),
    ]
    for name, documentation, value in values:
        yield GaugeMetricFamily(name, documentation, value=value)
    state = GaugeMetricFamily(
        "stigg_cache_connection_state", "1 for the current state", labels=["state"]
    )
    for candidate in ConnectionState:
        state.add_metric([candidate.value], float(candidate is status.state))
    yield state


def instrument(
    client: ResilientClient, registry: CollectorRegistry | None = None
) -> ClientCollector:
    """Count ``client``'s decisions and expose its state; registered in ``registry`` if given."""
    collector = ClientCollector(client)
    if registry is not None:
        registry.register(collector)
    return collector


__all__ = ["LATENCY_BUCKETS_S", "ClientCollector", "instrument"]
