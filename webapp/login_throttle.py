"""Login throttling: after 5 failures for one e-mail, or 20 from one address (many people may
share a clinic's address), within 15 minutes, wait."""
from __future__ import annotations

from flask import request
from redis.exceptions import RedisError

from .queues import redis_connection

MAX_FAILURES = 5
MAX_FAILURES_PER_ADDRESS = 20
WINDOW_SECONDS = 15 * 60


class LoginThrottle:
    def __init__(self, keys: list[str]):
        self.keys = keys

    @classmethod
    def for_request(cls, email: str) -> "LoginThrottle":
        addr = request.remote_addr or "unknown"
        return cls([f"tecpet:login:email:{(email or '').strip().lower()}", f"tecpet:login:ip:{addr}"])

    def blocked(self) -> bool:
        try:
            counts = redis_connection().mget(self.keys)
        except RedisError:
            return False
        by_email, by_address = (int(c or 0) for c in counts)
        return by_email >= MAX_FAILURES or by_address >= MAX_FAILURES_PER_ADDRESS

    def fail(self) -> None:
        try:
            pipe = redis_connection().pipeline()
            for k in self.keys:
                pipe.incr(k)
                pipe.expire(k, WINDOW_SECONDS)
            pipe.execute()
        except RedisError:
            pass

    def reset(self) -> None:
        try:
            redis_connection().delete(self.keys[0])
        except RedisError:
            pass
