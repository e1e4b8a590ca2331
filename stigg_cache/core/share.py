"""A conservative share of a limit's headroom, for a process that cannot see its fleet.

While a fleet's shared outbox is unreachable, each process judges consumptions
on what it alone knows; if each spent the whole headroom it last saw, ``n``
processes would grant ``n`` times the limit. Each spends at most its share
instead: ``fraction`` (one over the processes last seen) of the headroom it saw
when it lost sight of the others, so together they never pass the limit.
"""

from __future__ import annotations

import attrs

from stigg_cache.models import MeteredEntitlement


@attrs.frozen
class HeadroomShare:
    """What a process may still grant of one customer's feature while blind to its fleet.

    Attributes:
        fraction: its part of the headroom (``1 / processes last seen``).
        spent: what it granted of that feature since it lost sight (already in its usage).
        processes: the processes last seen (what ``fraction`` is one over).
    """

    fraction: float
    spent: float
    processes: int


def within_share(
    answer: MeteredEntitlement, requested: float, share: HeadroomShare | None
) -> MeteredEntitlement:
    """The answer, denied if ``requested`` does not fit in ``share`` (``None``: the whole
    headroom). ``current_usage`` counts ``share.spent``, so the headroom seen when sight
    of the fleet was lost is ``usage_limit - current_usage + spent``. A soft limit grants
    past the limit, as Stigg does."""
    limit = answer.usage_limit
    if share is None or not answer.has_access or answer.has_soft_limit or limit is None:
        return answer
    seen = limit - answer.current_usage + share.spent
    if share.spent + requested <= seen * share.fraction + 1e-9:
        return answer
    return attrs.evolve(
        answer, has_access=False, access_denied_reason="RequestedUsageExceedingLimit"
    )
