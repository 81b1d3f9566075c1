"""A lock per (integration, entity, record) in Redis, so two workers never push the same record
at once (a retried job and a resumed one, say). A chunk's locks are taken all or none in one
script, so two holders never deadlock and a chunk costs one round trip."""
from __future__ import annotations

import time
import uuid
from contextlib import contextmanager
from typing import Iterator

from flask import current_app

from integrations.base import TransientError

from ..queues import redis_connection

_TAKE_ALL = """
-- all or none: a chunk's records are locked in one round trip
for i, key in ipairs(KEYS) do
  if redis.call('EXISTS', key) == 1 and redis.call('GET', key) ~= ARGV[1] then
    for j = 1, i - 1 do redis.call('DEL', KEYS[j]) end
    return 0
  end
  redis.call('SET', key, ARGV[1], 'PX', ARGV[2])
end
return 1
"""

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
        while not redis.eval(_TAKE_ALL, len(keys), *keys, token, int(ttl * 1000)):
            if time.monotonic() > deadline:
                raise TransientError("Another worker is still sending some of these records; trying again later")
            time.sleep(0.05)
        held = keys
        yield
    finally:
        if held:
            redis.eval(_RELEASE, len(held), *held, token)
