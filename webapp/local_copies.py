"""Values a web process keeps for a few seconds so that pages under load do not ask Redis or the
database for them on every request (page_cache's figures, the logged-in user), and drops the
moment any process says they changed.

drop_everywhere() publishes the changed keys on CHANNEL (one per Redis database: PUBLISH reaches
every database's subscribers); each process's listener thread drops its copies. A key ending in
"*" drops every key that starts with what precedes it. While a process is not subscribed (Redis
down, reconnecting, not started yet) it keeps nothing and get() answers None, so it can never
serve a value whose drop it missed. A value read before a drop and kept after it is refused: every
drop advances a generation, and keep() takes the generation read before the value was.
"""
from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from typing import Any, Iterable

from redis.exceptions import RedisError

from .queues import redis_connection

log = logging.getLogger(__name__)
KEEP_SECONDS = 5.0
CHANNEL = "tecpet:local-copies:drop"


def channel(conn) -> str:
    return f"{CHANNEL}:{conn.connection_pool.connection_kwargs.get('db', 0)}"


class LocalCopies:
    def __init__(self):
        self.values: dict[str, tuple[float, Any]] = {}
        self.generation = 0
        self.subscribed = False
        self.lock = threading.Lock()
        self.listener: threading.Thread | None = None
        self.token: object | None = None  # the running listener's; a listener whose token is gone stops
        self.pid = 0

    # -- the copies
    def get(self, key: str) -> tuple[float, Any] | None:
        """(expiry, value) while kept, else None."""
        if not self.subscribed:
            return None
        hit = self.values.get(key)
        if hit is None or hit[0] < time.monotonic():
            return None
        return hit

    def keep(self, key: str, value: Any, generation: int) -> None:
        with self.lock:
            if self.subscribed and generation == self.generation:
                self.values[key] = (time.monotonic() + KEEP_SECONDS, value)

    def drop(self, keys: Iterable[str]) -> None:
        with self.lock:
            self.generation += 1
            for key in keys:
                if key.endswith("*"):
                    prefix = key[:-1]
                    for k in [k for k in self.values if k.startswith(prefix)]:
                        del self.values[k]
                else:
                    self.values.pop(key, None)

    def reset(self, subscribed: bool) -> None:
        with self.lock:
            self.generation += 1
            self.values.clear()
            self.subscribed = subscribed

    # -- the listener
    def stop(self) -> None:
        """Nothing kept, no listener: the next use starts one."""
        with self.lock:
            self.token = None
            self.listener = None
        self.reset(False)

    def ensure_listener(self) -> None:
        if self.listener is not None and self.pid == os.getpid() and self.listener.is_alive():
            return
        with self.lock:
            if self.listener is not None and self.pid == os.getpid() and self.listener.is_alive():
                return
            self.pid = os.getpid()  # after a fork the parent's thread is gone: a new one
            self.subscribed = False
            self.values.clear()
            self.token = token = object()
            self.listener = threading.Thread(target=self._listen, args=(redis_connection(), token),
                                             name="local-copies-drops", daemon=True)
            self.listener.start()

    def _listen(self, conn, token: object) -> None:
        delay = 0.5
        while self.token is token:
            pubsub = None
            try:
                pubsub = conn.pubsub(ignore_subscribe_messages=False)
                pubsub.subscribe(channel(conn))
                while self.token is token:
                    message = pubsub.get_message(timeout=1.0)
                    if message is None:
                        continue
                    if message["type"] == "subscribe" and self.token is token:
                        self.reset(True)
                        delay = 0.5
                    elif message["type"] == "message":
                        data = message["data"]
                        self.drop((data.decode() if isinstance(data, bytes) else str(data)).split())
            except (RedisError, OSError, ValueError) as exc:
                if self.token is token:
                    self.reset(False)
                log.debug("local copies: %s; keeping nothing until subscribed again", exc)
                time.sleep(delay)
                delay = min(delay * 2, 10.0)
            finally:
                if pubsub is not None:
                    with contextlib.suppress(RedisError, OSError):
                        pubsub.close()


copies = LocalCopies()


def drop_everywhere(keys: list[str], also_delete: bool = False) -> None:
    """Drop these keys in this process at once and in every other by a published message; with
    `also_delete`, delete them from Redis in the same round trip."""
    copies.drop(keys)
    try:
        conn = redis_connection()
        pipe = conn.pipeline(transaction=False)
        if also_delete:
            pipe.delete(*[k for k in keys if not k.endswith("*")])
        pipe.publish(channel(conn), " ".join(keys))
        pipe.execute()
    except RedisError:
        # not sent: other processes keep their copies up to KEEP_SECONDS (their own listener is
        # down too when Redis is, and then they keep nothing)
        log.debug("drop not published")


def install(app) -> None:
    """A new app (one per process in production; one per test, each with its own data) starts
    with nothing kept."""
    copies.stop()
