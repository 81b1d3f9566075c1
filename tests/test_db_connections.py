"""A PostgreSQL connection the server dropped while it sat in the pool (a restart, an idle timeout)
is found when taken out and replaced, and the page answers as usual (extensions.ping_on_checkout):
one empty query outside any transaction, instead of SQLAlchemy's BEGIN, SELECT 1, ROLLBACK, and
none for a connection back in the pool for less than PING_AFTER_IDLE_SECONDS. Read-only views run
their queries outside a transaction (webapp/read_only.py) and cannot write."""
from __future__ import annotations

import time

import pytest
from sqlalchemy import text

from tests.conftest import TEST_DATABASE
from webapp.extensions import PING_AFTER_IDLE_SECONDS

pytestmark = pytest.mark.skipif(TEST_DATABASE != "postgresql", reason="a SQLite file has no connection to lose")


def _drop_pooled_connections(db) -> None:
    """What a server restart does to idle pooled connections: their backends end."""
    with db.engine.connect() as conn:
        pid = conn.execute(text("SELECT pg_backend_pid()")).scalar()
    admin = db.engine.pool.recreate()  # a pool of its own: the app's connection stays idle in the app's
    try:
        c = admin.connect()
        try:
            cur = c.cursor()
            cur.execute("SELECT pg_terminate_backend(%s)", (pid,))
            c.commit()
        finally:
            c.close()
    finally:
        admin.dispose()


def test_a_dropped_pooled_connection_is_replaced_before_the_page_uses_it(app, world, web):
    from webapp.extensions import db
    a = world["clinic_a"].id
    owner = web("owner-a@test")
    assert owner.get(f"/c/{a}/runs").status_code == 200
    db.session.remove()
    db.engine.pool.dispose()  # one pooled connection, the next request's
    assert owner.get(f"/c/{a}/runs").status_code == 200
    _drop_pooled_connections(db)
    time.sleep(PING_AFTER_IDLE_SECONDS + 0.1)  # idle past the window: tested when taken out
    for _ in range(3):
        assert owner.get(f"/c/{a}/runs").status_code == 200


def test_without_the_check_the_dropped_connection_fails_the_request(database_url, redis_client):
    """The control: the same drop with the check off reaches the page's first query."""
    from sqlalchemy.exc import OperationalError
    from webapp import create_app
    from webapp.extensions import db
    app = create_app(TESTING=True, DB_PING_ON_CHECKOUT=False)
    with app.app_context():
        with db.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        _drop_pooled_connections(db)
        with pytest.raises(OperationalError):
            with db.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        db.engine.dispose()


def test_the_check_costs_one_round_trip_outside_any_transaction_and_none_right_after_use(app, world):
    """Per checkout after the idle window: an empty query in autocommit, no BEGIN/SELECT 1/ROLLBACK
    of its own; within the window, nothing."""
    from webapp.extensions import db
    pool = db.engine.pool
    calls = []
    raw = pool.connect()
    dbapi = raw.dbapi_connection
    original = type(dbapi).execute

    def spy(self, query, *args, **kwargs):
        calls.append((query, self.autocommit))
        return original(self, query, *args, **kwargs)
    raw.close()
    type(dbapi).execute = spy
    try:
        time.sleep(PING_AFTER_IDLE_SECONDS + 0.1)
        with db.engine.connect() as conn:
            assert conn.execute(text("SELECT 41 + 1")).scalar() == 42
        assert calls == [("", True)]
        with db.engine.connect() as conn:  # back in the pool a moment ago
            assert conn.execute(text("SELECT 1")).scalar() == 1
        assert calls == [("", True)]
    finally:
        type(dbapi).execute = original
