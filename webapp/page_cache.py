"""Short-lived per-clinic figures, so pages at 100,000 customers and 10,000 runs do not recompute
them on every request: record health counts (dropped whenever a customer's health changes) and the
dashboard's 30-day sync counts (dropped when a run ends).

They live in Redis for TTL_SECONDS, shared by every process. A web process also keeps what it
read for a few seconds (webapp/local_copies.py), so a page under load does not ask Redis each time
(a Redis round trip cost the dashboard a seventh of its throughput under P4's load); forget()
deletes a figure from Redis and drops every process's copy in the same round trip.
"""
from __future__ import annotations

import json
import logging
from typing import Any, Callable

from redis.exceptions import RedisError

from .local_copies import copies, drop_everywhere
from .queues import redis_connection

log = logging.getLogger(__name__)
TTL_SECONDS = 30


def _key(name: str, clinic_id: int) -> str:
    return f"tecpet:cache:{name}:{clinic_id}"


def cached(name: str, clinic_id: int, compute: Callable[[], Any]) -> Any:
    return cached_many(clinic_id, {name: compute})[name]


def _compute_and_keep(key: str, compute: Callable[[], Any], generation: int) -> Any:
    value = compute()
    try:
        redis_connection().set(key, json.dumps(value), ex=TTL_SECONDS)
    except RedisError:
        log.debug("cache write skipped")
        return value
    copies.keep(key, value, generation)
    return value


def cached_many(clinic_id: int, computes: dict[str, Callable[[], Any]]) -> dict[str, Any]:
    """Several figures of one page: this process's copies, then one Redis round trip for the rest."""
    copies.ensure_listener()
    out: dict[str, Any] = {}
    missing = []
    for name in computes:
        hit = copies.get(_key(name, clinic_id))
        if hit is not None:
            out[name] = hit[1]
        else:
            missing.append(name)
    if not missing:
        return out
    generation = copies.generation
    keys = [_key(name, clinic_id) for name in missing]
    try:
        raws = redis_connection().mget(keys)
    except RedisError:
        return {**out, **{name: computes[name]() for name in missing}}  # Redis down: slower, not wrong
    for name, key, raw in zip(missing, keys, raws):
        if raw is None:
            out[name] = _compute_and_keep(key, computes[name], generation)
        else:
            out[name] = value = json.loads(raw)
            copies.keep(key, value, generation)
    return out


def forget_health(clinic_id: int) -> None:
    forget(clinic_id, "health", "problems")


def forget(clinic_id: int, *names: str) -> None:
    drop_everywhere([_key(name, clinic_id) for name in names], also_delete=True)
