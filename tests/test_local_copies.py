"""webapp/local_copies.py: a process keeps page_cache's figures and the logged-in user for a few
seconds, and drops them the moment any process says they changed (a published message), never
serving a dropped value: not while unsubscribed, not when a drop overtakes a read."""
from __future__ import annotations

import time

import pytest

from webapp import local_copies, page_cache
from webapp.local_copies import copies


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
    monkeypatch.setattr(local_copies, "redis_connection", lambda: spy)
    return spy


def _subscribed(timeout: float = 5.0) -> None:
    copies.ensure_listener()
    deadline = time.monotonic() + timeout
    while not copies.subscribed:
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
    redis_client.publish(local_copies.channel(redis_client), key)
    deadline = time.monotonic() + 2
    while page_cache.cached_many(7, {"health": lambda: calls.append(1) or {"ready": 3}})["health"] != {"ready": 3}:
        assert time.monotonic() < deadline, "the drop never reached this process"
        time.sleep(0.01)
    assert calls == [1, 1]


def test_nothing_is_kept_while_the_process_is_not_subscribed(counting):
    _subscribed()
    copies.reset(False)  # what a Redis outage does to the listener
    for n in range(3):
        assert page_cache.cached_many(8, {"daily": lambda: [n]})["daily"] == [0]  # computed once, read back
    assert counting.mgets == 3


def test_a_drop_that_overtakes_a_read_leaves_nothing_kept(counting, monkeypatch):
    _subscribed()
    page_cache.cached_many(9, {"health": lambda: {"ready": 1}})  # now in Redis
    copies.drop(["tecpet:cache:health:9"])
    real_mget = counting.mget

    def mget_then_dropped(keys):
        answer = real_mget(keys)  # the old value, read just before...
        copies.drop(keys)  # ...another process's drop arrives
        return answer
    monkeypatch.setattr(counting, "mget", mget_then_dropped)
    assert page_cache.cached_many(9, {"health": lambda: {"ready": 2}})["health"] == {"ready": 1}
    assert copies.get("tecpet:cache:health:9") is None  # not kept: the next read asks Redis


def test_forget_drops_this_process_copy_at_once(counting):
    _subscribed()
    page_cache.cached_many(10, {"health": lambda: {"ready": 1}})
    page_cache.forget(10, "health")
    assert page_cache.cached_many(10, {"health": lambda: {"ready": 5}})["health"] == {"ready": 5}


def _user_reads(db, run) -> int:
    from sqlalchemy import event
    seen = []

    def record(conn, cursor, statement, *args):
        if "FROM users u" in statement:
            seen.append(statement)
    event.listen(db.engine, "before_cursor_execute", record)
    try:
        run()
    finally:
        event.remove(db.engine, "before_cursor_execute", record)
    return len(seen)


def test_the_user_is_kept_briefly_and_dropped_when_changed_anywhere(app, world, web, db_session, redis_client):
    from webapp.extensions import db
    from webapp.models import User
    a = world["clinic_a"].id
    owner = web("owner-a@test")
    _subscribed()
    page = lambda: owner.get(f"/c/{a}/runs")  # noqa: E731
    assert _user_reads(db, page) == 1  # read, then kept
    assert _user_reads(db, page) == 0
    # another process changes the user (support, a CLI): its commit publishes the drop
    redis_client.publish(local_copies.channel(redis_client), f"tecpet:user:{world['owner_a'].id}")
    deadline = time.monotonic() + 2
    while _user_reads(db, page) == 0:
        assert time.monotonic() < deadline, "the drop never reached this process"
        time.sleep(0.01)
    # a change through the ORM here drops it at commit: role, email, clinic name, deletion
    user = db_session.get(User, world["owner_a"].id)
    user.email = "new-a@test"
    db_session.commit()
    assert "new-a@test" in owner.get(f"/c/{a}/runs").get_data(as_text=True)
    world["clinic_a"].name = "Clínica Nova"
    db_session.commit()
    assert "Clínica Nova" in owner.get(f"/c/{a}/runs").get_data(as_text=True)
    db_session.delete(user)
    db_session.commit()
    assert owner.get(f"/c/{a}/runs").status_code == 302


def test_the_user_is_read_on_every_request_while_not_subscribed(app, world, web):
    from webapp.extensions import db
    a = world["clinic_a"].id
    owner = web("owner-a@test")
    _subscribed()
    copies.reset(False)  # Redis gone: the listener cannot hear drops, so nothing is kept
    assert [_user_reads(db, lambda: owner.get(f"/c/{a}/runs")) for _ in range(3)] == [1, 1, 1]


def test_the_dashboards_run_figures_are_dropped_by_the_commit_that_changes_them(world, db_session, monkeypatch):
    """page_cache.install: a commit that changes an integration, adds a run or changes a run's state
    drops that clinic's status and daily figures, once the commit is done; a run's counters moving,
    other rows, and a rolled-back change drop nothing."""
    from webapp.models import Integration, SyncRun
    a, b = world["clinic_a"], world["clinic_b"]
    dropped = []
    monkeypatch.setattr(page_cache, "forget_many", lambda clinics, *names: dropped.append((set(clinics), names)))
    integ = Integration(clinic_id=a.id, erp="vhsys", enabled=True, features=[])
    db_session.add(integ)
    db_session.flush()
    assert dropped == []  # not before the commit
    db_session.commit()
    assert dropped == [({a.id}, ("status", "daily"))]

    run = SyncRun(clinic_id=b.id, integration_id=integ.id, erp="vhsys", direction="push", entity="customer",
                  trigger="event", status="running", total=10)
    db_session.add(run)
    db_session.commit()
    run.done, run.created = 5, 5  # a step's progress
    db_session.commit()
    assert dropped[1:] == [({b.id}, ("status", "daily"))]
    run.status = "succeeded"
    db_session.commit()
    assert dropped[2:] == [({b.id}, ("status", "daily"))]

    integ.paused_reason = "Paused"
    db_session.flush()
    db_session.rollback()
    db_session.commit()
    assert len(dropped) == 3  # rolled back: nothing to drop
    a.name = "Another name"
    db_session.commit()
    assert len(dropped) == 3
