"""Short-lived per-clinic figures in Redis (record health counts), dropped whenever a customer's
health changes, so pages at 100,000 customers do not rescan them on every request."""
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
    value = compute()
    try:
        redis_connection().set(_key(name, clinic_id), json.dumps(value), ex=TTL_SECONDS)
    except RedisError:
        log.debug("cache write skipped")
    return value


def forget_health(clinic_id: int) -> None:
    try:
        redis_connection().delete(_key("health", clinic_id), _key("problems", clinic_id))
    except RedisError:
        log.debug("cache drop skipped: entries expire by themselves")
