"""A host on the version before the index by customer (and before keys were scoped to their
customer), writing usage records with that version's scripts (kept in ``legacy_v1/``).

Run as ``python legacy_writer.py REDIS_URL NAMESPACE CUSTOMER COUNT``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import redis

from stigg_cache.outbox.records import usage_record

KEYS = (
    *("seq", "rec", "pay", "ident", "idx", "att", "pending", "sent", "dead", "dinfo", "owners"),
    *("event:ready", "event:delayed", "event:leased", "usage:ready", "usage:delayed"),
    *("usage:leased", "event:delayed_since", "event:leased_since", "usage:delayed_since"),
    *("usage:leased_since", "counted", "feed", "feed_seq"),
)


def main(url: str, namespace: str, customer: str, count: str) -> None:
    scripts = Path(__file__).with_name("legacy_v1")
    text = "".join(
        (scripts / name).read_text() for name in ("outbox_prelude.lua", "outbox_enqueue.lua")
    )
    client = redis.Redis.from_url(url)
    enqueue = client.register_script(text)
    now = time.time()
    args: list[str | int] = ["", 1, int(count)]
    for n in range(int(count)):
        usage = {
            "customer_id": customer,
            "feature_id": "api_calls",
            "value": 1,
            "idempotency_key": f"v1-{n}",
        }
        record = usage_record(usage, now)
        args += [f"usage\n{record.idempotency_key}", repr(now), f"usage\n{now!r}", record.payload]
    flags = enqueue(keys=[f"{{stigg-cache:{namespace}}}:outbox:{name}" for name in KEYS], args=args)
    assert flags == [0] * int(count), flags
    client.close()


if __name__ == "__main__":
    main(*sys.argv[1:])
