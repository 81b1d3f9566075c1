"""A lock per (integration, entity, record) in Redis, so two workers never push the same record
at once (a retried job and a resumed one, say). Taken in id order, so two holders never deadlock."""
from __future__ import annotations

import time
import uuid
from contextlib import contextmanager
from typing import Iterator

from flask import current_app

from integrations.base import TransientError

from ..queues import redis_connection

_RELEASE = """
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then redis.call('DEL', key) end
end
return 1
"""


@contextmanager
def record_locks(integration_id: int, entity: str, local_ids: list[int], ttl: float | None = None,
                 wait: float = 60.0) -> Iterator[None]:
    """`ttl` bounds how long a crashed holder blocks the records (RECORD_LOCK_SECONDS)."""
    ttl = ttl or current_app.config["RECORD_LOCK_SECONDS"]
    redis = redis_connection()
    token = uuid.uuid4().hex
    keys = [f"tecpet:reclock:{integration_id}:{entity}:{i}" for i in sorted(set(local_ids))]
    held: list[str] = []
    deadline = time.monotonic() + wait
    try:
        for key in keys:
            while not redis.set(key, token, nx=True, px=int(ttl * 1000)):
                if time.monotonic() > deadline:
                    raise TransientError("Another worker is still sending some of these records; trying again later")
                time.sleep(0.05)
            held.append(key)
        yield
    finally:
        if held:
            redis.eval(_RELEASE, len(held), *held, token)
