"""What a chaos run did, recorded as it happened, and the guarantees checked afterwards.

Every operation is recorded when invoked and again when it ends (ok or
failed); one that never ended (its process was killed) has an unknown
outcome. The invariants are judged from this history and from what the fake
Stigg counted — never from the client's own account of itself.
"""

from __future__ import annotations

import enum
import json
import threading
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import attrs

from stigg_cache.testing.account import FakeAccount


class Outcome(enum.Enum):
    """How an operation ended, as its caller saw it."""

    OK = "ok"
    FAILED = "failed"
    UNKNOWN = "unknown"  # invoked, never returned (killed, or still running at the end)


@attrs.define
class Operation:
    """One call a workload made: a check or a usage report."""

    id: int
    kind: str  # "check" or "report"
    invoked_at: float
    outcome: Outcome = Outcome.UNKNOWN
    ended_at: float | None = None
    detail: dict[str, Any] = attrs.Factory(dict)


class History:
    """A thread-safe log of operations."""

    def __init__(self) -> None:
        """Empty."""
        self._lock = threading.Lock()
        self.operations: list[Operation] = []

    def invoke(self, kind: str, at: float, **detail: Any) -> Operation:
        """Record a call about to be made."""
        with self._lock:
            operation = Operation(len(self.operations), kind, at, detail=dict(detail))
            self.operations.append(operation)
        return operation

    def end(self, operation: Operation, outcome: Outcome, at: float, **detail: Any) -> None:
        """Record how a call ended."""
        with self._lock:
            operation.outcome, operation.ended_at = outcome, at
            operation.detail.update(detail)

    def of(self, kind: str, outcome: Outcome | None = None) -> list[Operation]:
        """Operations of ``kind`` (with ``outcome``, if given)."""
        with self._lock:
            return [
                op
                for op in self.operations
                if op.kind == kind and (outcome is None or op.outcome is outcome)
            ]


@attrs.frozen
class Verdict:
    """One invariant: held or not, with the figures that say so.

    ``judged`` is false when the run gave nothing to judge it on (the figures say why):
    such a verdict did not fail, and is shown as "not judged", never as a pass.
    """

    name: str
    passed: bool
    figures: str
    judged: bool = True

    @classmethod
    def not_judged(cls, name: str, why: str) -> Verdict:
        """An invariant this run could not judge, and why."""
        return cls(name, passed=True, figures=f"not judged: {why}", judged=False)

    @property
    def shown(self) -> str:
        """``pass``, ``FAIL`` or ``not judged``."""
        if not self.judged:
            return "not judged"
        return "pass" if self.passed else "FAIL"


def _keys(operations: Iterable[Operation]) -> dict[str, str]:
    """Idempotency key -> payload, for every record the operations carried."""
    return {
        key: payload for op in operations for key, payload in op.detail.get("records", {}).items()
    }


def usage_verdicts(history: History, account: FakeAccount) -> list[Verdict]:
    """Usage: nothing acknowledged lost, nothing counted twice or unasked, no key reused."""
    acknowledged = _keys(history.of("report", Outcome.OK))
    refused = _keys(history.of("report", Outcome.FAILED))
    unknown = _keys(history.of("report", Outcome.UNKNOWN))
    invoked = _keys(history.of("report"))
    counted = [*account.events, *account.usages]
    per_key = Counter(str(item.get("idempotencyKey")) for item in counted)
    lost = sorted(set(acknowledged) - set(per_key))
    twice = sorted(key for key, times in per_key.items() if times > 1)
    unasked = sorted(set(per_key) - set(invoked))
    changed = sorted(
        item["idempotencyKey"]
        for item in counted
        if item.get("idempotencyKey") in invoked
        and _canonical(item) != _canonical(json.loads(invoked[item["idempotencyKey"]]))
    )
    arrived = sum(1 for key in unknown if key in per_key)
    verdicts = [
        Verdict(
            "no acknowledged usage lost",
            not lost,
            f"{len(acknowledged)} acknowledged ({len(refused)} refused loudly), "
            f"{len(lost)} missing {lost[:3]}",
        ),
        Verdict(
            "no usage counted twice",
            not twice,
            f"{len(per_key)} keys counted, {len(twice)} twice {twice[:3]}",
        ),
        Verdict(
            "nothing counted that was never reported",
            not unasked,
            f"{len(unasked)} unasked {unasked[:3]}",
        ),
        Verdict(
            "a key always carries the same usage",
            not changed,
            f"{len(changed)} changed {changed[:3]}",
        ),
        Verdict(
            "every unknown outcome resolved",
            passed=True,  # the fake's count settles each one: it arrived, or it never did
            figures=f"{len(unknown)} records of calls cut short: {arrived} arrived, "
            f"{len(unknown) - arrived} never acknowledged",
        ),
    ]
    if not invoked:
        return [Verdict.not_judged(v.name, "no usage was reported") for v in verdicts]
    return verdicts


def _canonical(item: dict[str, Any]) -> str:
    return json.dumps(item, sort_keys=True)


def check_verdicts(
    history: History,
    *,
    timeout_s: float,
    margin_s: float,
    fresh_for_s: float,
    max_staleness_s: float,
) -> list[Verdict]:
    """Checks: within budget, staleness reported, STALE only within its budget."""
    done = history.of("check", Outcome.OK)
    failed = history.of("check", Outcome.FAILED)
    elapsed = sorted((op.ended_at or 0) - op.invoked_at for op in done)
    late = [e for e in elapsed if e > timeout_s + margin_s]
    unreported = [
        op.id
        for op in done
        if (op.detail.get("age_s") or 0) > fresh_for_s + margin_s and not op.detail.get("stale")
    ]
    overdue = [
        op.id
        for op in done
        if op.detail.get("source") == "STALE"
        and (op.detail.get("age_s") or 0) > max_staleness_s + margin_s
    ]
    verdicts = [
        Verdict("no check raised", not failed, f"{len(done)} answered, {len(failed)} raised"),
        Verdict(
            f"every check answered within {timeout_s:g}s + {margin_s:g}s",
            not late,
            ", ".join(f"{name} {_at(elapsed, q) * 1e3:.2f} ms" for name, q in _QUANTILES)
            + f", {len(late)} late",
        ),
        Verdict(
            "staleness always reported",
            not unreported,
            f"{len(unreported)} old answers not marked stale",
        ),
        Verdict(
            "STALE only within max_staleness", not overdue, f"{len(overdue)} beyond the budget"
        ),
    ]
    if not done and not failed:
        return [Verdict.not_judged(v.name, "no check was made") for v in verdicts]
    return verdicts


_QUANTILES = (("p50", 0.5), ("p99", 0.99), ("max", 1.0))


def _at(values: Sequence[float], quantile: float) -> float:
    if not values:
        return 0.0
    return values[min(len(values) - 1, int(quantile * len(values)))]
