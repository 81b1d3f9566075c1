"""Redis connection and the RQ queues. Redis carries jobs only; the database holds the truth.

Queues, highest priority first: "events" (single changes, invoices), "pulls", "bulk" (initial syncs).
A worker always drains events before bulk, so one clinic's 100k initial sync never delays another
clinic's invoice.
"""
from __future__ import annotations

import redis
from flask import current_app
from rq import Queue

QUEUE_NAMES = ("events", "pulls", "bulk")


def redis_connection(url: str | None = None) -> redis.Redis:
    url = url or current_app.config["REDIS_URL"]
    cache = current_app.extensions.setdefault("tecpet_redis", {})
    conn = cache.get(url)
    if conn is None:
        conn = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=10, health_check_interval=30)
        cache[url] = conn
    return conn


def queue(name: str) -> Queue:
    return Queue(name, connection=redis_connection())


def queue_for(run) -> str:
    if run.direction == "pull":
        return "pulls"
    return "bulk" if run.trigger == "initial" else "events"
