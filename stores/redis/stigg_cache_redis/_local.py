"""Where a Redis outbox keeps usage while Redis is unreachable: a local SQLite outbox per
Redis deployment, namespace and Stigg environment, in the user's cache directory."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
from pathlib import Path

import platformdirs

from stigg_cache.errors import ConfigurationError, StoreError
from stigg_cache.outbox.sqlite import SqliteOutbox
from stigg_cache_redis._connection import RedisSettings

logger = logging.getLogger("stigg_cache_redis")


def default_local_outbox(settings: RedisSettings, environment: str | None) -> Path:
    """Where usage waits while Redis is unreachable (the user's cache directory), one file
    per Redis deployment (``host:port/db``, by a digest), namespace and Stigg environment
    (its token): two clients of one host that send to different Redis servers or Stigg
    environments never share it."""
    deployment = hashlib.sha256(settings.deployment.encode()).hexdigest()[:12]
    suffix = f"-{environment}" if environment else ""
    name = f"redis-{settings.namespace}-{deployment}{suffix}-outbox.db"
    return _cache_dir() / name


def _cache_dir() -> Path:
    return Path(platformdirs.user_cache_dir("stigg-cache"))


def warn_of_unnamed_local_outbox(namespace: str) -> None:
    """The file versions before 0.x used for every deployment and environment: its records
    cannot be told apart, so they are left for an operator to place (logged once)."""
    old = _cache_dir() / f"redis-{namespace}-outbox.db"
    if not old.exists():
        return
    try:
        with contextlib.closing(SqliteOutbox(old, read_only=True)) as box:
            waiting = box.stats(time.time()).pending
    except (StoreError, ConfigurationError):
        return
    if waiting:
        logger.warning(
            "stigg_cache_redis.unplaced_local_outbox: %d record(s) wait in %s, the local "
            "outbox an earlier version shared between every Redis server and Stigg "
            "environment of this user; they are not sent, as they may belong to another: "
            "to send them, open once the client they belong to with &local_outbox=%s",
            waiting,
            old,
            old,
            extra={"event": "stigg_cache_redis.unplaced_local_outbox", "records": waiting},
        )
