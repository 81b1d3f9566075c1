"""The shared rate limiter on the real Redis: one reservation per request at an ERP's pace; at a
pace faster than a round trip to Redis, a block of send times per call, which no window exceeds."""
from __future__ import annotations

import threading
import time

from integrations.base import RateLimit
from integrations.http import RedisRateLimiter


def counting(limiter: RedisRateLimiter) -> list[int]:
    """Count the limiter's calls to its Redis script."""
    calls = [0]
    script = limiter._script

    def counted(*args, **kwargs):
        calls[0] += 1
        return script(*args, **kwargs)

    limiter._script = counted
    return calls


def reserved(redis_client, limiter: RedisRateLimiter, account: str, limit: RateLimit) -> int:
    count, seconds = limit.windows[0]
    return redis_client.zcard(f"{limiter.prefix}:{account}:{count}/{seconds}")


def test_at_an_erps_pace_every_request_reserves_its_own_time(redis_client):
    limiter = RedisRateLimiter(redis_client)
    calls = counting(limiter)
    limit = RateLimit(windows=((50, 1.0),))  # 50 a second: a request every ~21 ms
    for _ in range(5):
        limiter.acquire("erp:1", limit)
    assert calls[0] == 5 and reserved(redis_client, limiter, "erp:1", limit) == 5
    assert not limiter._kept


def test_at_a_fast_pace_one_call_reserves_a_block_that_the_process_then_uses(redis_client):
    limiter = RedisRateLimiter(redis_client)
    calls = counting(limiter)
    limit = RateLimit(windows=((1000, 1.0),), safety=0.0)  # a request every millisecond: blocks of 10
    for _ in range(100):
        limiter.acquire("erp:2", limit)
    assert calls[0] <= 12  # ten blocks, and a new one after any that went stale in between
    assert 100 <= reserved(redis_client, limiter, "erp:2", limit) <= 120


def test_a_reserved_time_not_used_in_time_is_dropped_not_sent_late(redis_client):
    limiter = RedisRateLimiter(redis_client)
    calls = counting(limiter)
    limit = RateLimit(windows=((1000, 1.0),), safety=0.0)
    block = limiter._plan("erp:3", limit)[2]
    limiter.acquire("erp:3", limit)
    assert block >= 8 and calls[0] == 1 and len(limiter._kept[("erp:3", limit)]) == block - 1
    time.sleep(limiter.LATE * 3)
    limiter.acquire("erp:3", limit)
    assert calls[0] == 2  # the kept times were too old: reserved afresh
    assert reserved(redis_client, limiter, "erp:3", limit) == 2 * block  # the stale ones still count


def test_blocks_shared_by_threads_never_exceed_a_window(redis_client):
    limiter = RedisRateLimiter(redis_client)
    limit = RateLimit(windows=((200, 0.5),), safety=0.05)  # a request every 2.6 ms: blocks of 3
    sent: list[float] = []
    lock = threading.Lock()

    def send(n: int) -> None:
        for _ in range(n):
            limiter.acquire("erp:4", limit)
            with lock:
                sent.append(time.monotonic())

    threads = [threading.Thread(target=send, args=(200,)) for _ in range(3)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    sent.sort()
    busiest = max(sum(1 for s in sent[i:] if s < t + 0.5) for i, t in enumerate(sent))
    assert len(sent) == 600 and busiest <= 200
    assert elapsed >= 1.5  # 600 requests, one every 2.6 ms: the pace held
