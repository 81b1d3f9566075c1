"""webapp/page_cache.py: a process keeps the figures it read from Redis for a few seconds, and
drops them the moment any process forgets them (a published message), never serving a dropped
figure: not while unsubscribed, not when a drop overtakes a read."""
from __future__ import annotations

import time

import pytest

from webapp import page_cache


class CountingRedis:
    """The app's Redis client, counting MGETs."""

    def __init__(self, real):
        self.real, self.mgets = real, 0

    def mget(self, keys):
        self.mgets += 1
        return self.real.mget(keys)

    def __getattr__(self, name):
        return getattr(self.real, name)


@pytest.fixture
def counting(app, monkeypatch):
    from webapp.queues import redis_connection
    spy = CountingRedis(redis_connection())
    monkeypatch.setattr(page_cache, "redis_connection", lambda: spy)
    return spy


def _subscribed(timeout: float = 5.0) -> None:
    page_cache._ensure_listener()
    deadline = time.monotonic() + timeout
    while not page_cache._local.subscribed:
        assert time.monotonic() < deadline, "the listener never subscribed"
        time.sleep(0.01)


def test_a_kept_figure_spares_redis_until_another_process_forgets_it(counting, redis_client):
    _subscribed()
    calls = []
    first = page_cache.cached_many(7, {"health": lambda: calls.append(1) or {"ready": 1}})
    assert first == {"health": {"ready": 1}} and calls == [1] and counting.mgets == 1
    for _ in range(3):
        assert page_cache.cached_many(7, {"health": lambda: calls.append(1) or {"ready": 2}})["health"] == {"ready": 1}
    assert counting.mgets == 1 and calls == [1]  # kept: no Redis round trip, nothing recomputed

    # what forget() does in another process (the worker ending a run): delete and publish
    key = "tecpet:cache:health:7"
    redis_client.delete(key)
    redis_client.publish(page_cache._channel(redis_client), key)
    deadline = time.monotonic() + 2
    while page_cache.cached_many(7, {"health": lambda: calls.append(1) or {"ready": 3}})["health"] != {"ready": 3}:
        assert time.monotonic() < deadline, "the drop never reached this process"
        time.sleep(0.01)
    assert calls == [1, 1]


def test_nothing_is_kept_while_the_process_is_not_subscribed(counting):
    _subscribed()
    page_cache._local.reset(False)  # what a Redis outage does to the listener
    for n in range(3):
        assert page_cache.cached_many(8, {"daily": lambda: [n]})["daily"] == [0]  # computed once, read back
    assert counting.mgets == 3


def test_a_drop_that_overtakes_a_read_leaves_nothing_kept(counting, monkeypatch):
    _subscribed()
    page_cache.cached_many(9, {"health": lambda: {"ready": 1}})  # now in Redis
    page_cache._local.drop(["tecpet:cache:health:9"])
    real_mget = counting.mget

    def mget_then_dropped(keys):
        answer = real_mget(keys)  # the old value, read just before...
        page_cache._local.drop(keys)  # ...another process's drop arrives
        return answer
    monkeypatch.setattr(counting, "mget", mget_then_dropped)
    assert page_cache.cached_many(9, {"health": lambda: {"ready": 2}})["health"] == {"ready": 1}
    assert page_cache._local.get("tecpet:cache:health:9") is None  # not kept: the next read asks Redis


def test_forget_drops_this_process_copy_at_once(counting):
    _subscribed()
    page_cache.cached_many(10, {"health": lambda: {"ready": 1}})
    page_cache.forget(10, "health")
    assert page_cache.cached_many(10, {"health": lambda: {"ready": 5}})["health"] == {"ready": 5}
