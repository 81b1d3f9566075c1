"""Short-lived per-clinic figures in Redis, so pages at 100,000 customers and 10,000 runs do not
recompute them on every request: record health counts (dropped whenever a customer's health
changes) and the dashboard's 30-day sync counts (dropped when a run ends)."""
from __future__ import annotations

import json
import logging
from typing import Any, Callable

from redis.exceptions import RedisError

from .queues import redis_connection

log = logging.getLogger(__name__)
TTL_SECONDS = 30


def _key(name: str, clinic_id: int) -> str:
    return f"tecpet:cache:{name}:{clinic_id}"


def cached(name: str, clinic_id: int, compute: Callable[[], Any]) -> Any:
    try:
        raw = redis_connection().get(_key(name, clinic_id))
        if raw is not None:
            return json.loads(raw)
    except RedisError:
        return compute()  # Redis down: the page is slower, not wrong
    return _compute_and_keep(name, clinic_id, compute)


def _compute_and_keep(name: str, clinic_id: int, compute: Callable[[], Any]) -> Any:
    value = compute()
    try:
        redis_connection().set(_key(name, clinic_id), json.dumps(value), ex=TTL_SECONDS)
    except RedisError:
        log.debug("cache write skipped")
    return value


def cached_many(clinic_id: int, computes: dict[str, Callable[[], Any]]) -> dict[str, Any]:
    """cached() for several figures of one page in one Redis round trip."""
    names = list(computes)
    try:
        raws = redis_connection().mget([_key(name, clinic_id) for name in names])
    except RedisError:
        return {name: compute() for name, compute in computes.items()}
    out = {}
    for name, raw in zip(names, raws):
        out[name] = json.loads(raw) if raw is not None else _compute_and_keep(name, clinic_id, computes[name])
    return out


def forget_health(clinic_id: int) -> None:
    forget(clinic_id, "health", "problems")


def forget(clinic_id: int, *names: str) -> None:
    try:
        redis_connection().delete(*(_key(name, clinic_id) for name in names))
    except RedisError:
        log.debug("cache drop skipped: entries expire by themselves")
