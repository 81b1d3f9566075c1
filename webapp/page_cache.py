"""Short-lived per-clinic figures, so pages at 100,000 customers and 10,000 runs do not recompute
them on every request: record health counts (dropped whenever a customer's health changes) and the
dashboard's 30-day sync counts (dropped when a run ends).

They live in Redis for TTL_SECONDS, shared by every process. A web process also keeps what it
read for up to LOCAL_SECONDS, so a page under load does not ask Redis each time (a Redis round trip
cost the dashboard a seventh of its throughput under P4's load). A figure dropped anywhere is
dropped in every process at once: forget() deletes the keys and publishes them on FORGET_CHANNEL,
and each process's listener thread drops its own copies. While a process is not subscribed (Redis
down, reconnecting, not started yet) it keeps nothing of its own and reads Redis as before, so it
cannot miss a drop. A read that a drop overtakes (the old value read from Redis just before the
drop arrives) is not kept either: every drop advances a generation the reader checks.
(FORGET_CHANNEL has one channel per Redis database: PUBLISH reaches every database's subscribers.)
"""
from __future__ import annotations

import json
import logging
import os
import threading
import time
from typing import Any, Callable

from redis.exceptions import RedisError

from .queues import redis_connection

log = logging.getLogger(__name__)
TTL_SECONDS = 30
LOCAL_SECONDS = 5.0
FORGET_CHANNEL = "tecpet:cache:forget"


def _channel(conn) -> str:
    return f"{FORGET_CHANNEL}:{conn.connection_pool.connection_kwargs.get('db', 0)}"


def _key(name: str, clinic_id: int) -> str:
    return f"tecpet:cache:{name}:{clinic_id}"


class _Local:
    """This process's copies, trusted only while the listener is subscribed."""

    def __init__(self):
        self.values: dict[str, tuple[float, Any]] = {}
        self.generation = 0
        self.subscribed = False
        self.lock = threading.Lock()
        self.listener: threading.Thread | None = None
        self.token: object | None = None  # the running listener's; a listener whose token is gone stops
        self.pid = 0

    def get(self, key: str):
        if not self.subscribed:
            return None
        hit = self.values.get(key)
        if hit is None or hit[0] < time.monotonic():
            return None
        return hit

    def keep(self, key: str, value: Any, generation: int) -> None:
        with self.lock:
            if self.subscribed and generation == self.generation:
                self.values[key] = (time.monotonic() + LOCAL_SECONDS, value)

    def drop(self, keys) -> None:
        with self.lock:
            self.generation += 1
            for key in keys:
                self.values.pop(key, None)

    def reset(self, subscribed: bool) -> None:
        with self.lock:
            self.generation += 1
            self.values.clear()
            self.subscribed = subscribed


_local = _Local()


def install(app) -> None:
    """A new app (one per process in production; one per test, each with its own data) starts with
    nothing kept; its listener starts with its first cached read."""
    with _local.lock:
        _local.token = None  # the previous app's listener stops
        _local.listener = None
    _local.reset(False)


def _ensure_listener() -> None:
    if _local.listener is not None and _local.pid == os.getpid() and _local.listener.is_alive():
        return
    with _local.lock:
        if _local.listener is not None and _local.pid == os.getpid() and _local.listener.is_alive():
            return
        _local.pid = os.getpid()  # after a fork the parent's thread is gone: a new one
        _local.subscribed = False
        _local.values.clear()
        _local.token = token = object()
        _local.listener = threading.Thread(target=_listen, args=(redis_connection(), token),
                                           name="page-cache-forget", daemon=True)
        _local.listener.start()


def _listen(conn, token: object) -> None:
    """Subscribe, then drop what other processes forget; on any Redis error keep nothing until
    subscribed again."""
    delay = 0.5
    while _local.token is token:
        pubsub = None
        try:
            pubsub = conn.pubsub(ignore_subscribe_messages=False)
            pubsub.subscribe(_channel(conn))
            while _local.token is token:
                message = pubsub.get_message(timeout=1.0)
                if message is None:
                    continue
                if message["type"] == "subscribe" and _local.token is token:
                    _local.reset(True)
                    delay = 0.5
                elif message["type"] == "message":
                    data = message["data"]
                    keys = (data.decode() if isinstance(data, bytes) else str(data)).split()
                    _local.drop(keys)
        except (RedisError, OSError, ValueError) as exc:
            if _local.token is token:
                _local.reset(False)
            log.debug("page cache listener: %s; keeping nothing locally until subscribed again", exc)
            time.sleep(delay)
            delay = min(delay * 2, 10.0)
        finally:
            if pubsub is not None:
                try:
                    pubsub.close()
                except (RedisError, OSError):
                    pass


def cached(name: str, clinic_id: int, compute: Callable[[], Any]) -> Any:
    return cached_many(clinic_id, {name: compute})[name]


def _compute_and_keep(key: str, compute: Callable[[], Any], generation: int) -> Any:
    value = compute()
    try:
        redis_connection().set(key, json.dumps(value), ex=TTL_SECONDS)
    except RedisError:
        log.debug("cache write skipped")
        return value
    _local.keep(key, value, generation)
    return value


def cached_many(clinic_id: int, computes: dict[str, Callable[[], Any]]) -> dict[str, Any]:
    """Several figures of one page: this process's copies, then one Redis round trip for the rest."""
    _ensure_listener()
    out: dict[str, Any] = {}
    missing = []
    for name in computes:
        hit = _local.get(_key(name, clinic_id))
        if hit is not None:
            out[name] = hit[1]
        else:
            missing.append(name)
    if not missing:
        return out
    generation = _local.generation
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
            _local.keep(key, value, generation)
    return out


def forget_health(clinic_id: int) -> None:
    forget(clinic_id, "health", "problems")


def forget(clinic_id: int, *names: str) -> None:
    keys = [_key(name, clinic_id) for name in names]
    _local.drop(keys)
    try:
        conn = redis_connection()
        pipe = conn.pipeline(transaction=False)
        pipe.delete(*keys)
        pipe.publish(_channel(conn), " ".join(keys))
        pipe.execute()
    except RedisError:
        log.debug("cache drop skipped: entries expire by themselves")
