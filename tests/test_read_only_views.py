"""Views marked @reads_only (webapp/read_only.py): on PostgreSQL every query of the request, the
logged-in user's included, runs outside a transaction (no BEGIN, no ROLLBACK round trips); other
requests keep theirs; and such a view that writes fails instead of committing statement by
statement, on either database."""
from __future__ import annotations

import pytest
from sqlalchemy import event

from tests.conftest import TEST_DATABASE


def _backend_statements(db, run):
    """What the server sees of `run()`: the transaction state of each query of the request."""
    seen = []

    def record(conn, cursor, statement, parameters, context, executemany):
        seen.append(conn.connection.dbapi_connection.autocommit)
    event.listen(db.engine, "before_cursor_execute", record)
    try:
        run()
    finally:
        event.remove(db.engine, "before_cursor_execute", record)
    return seen


@pytest.mark.skipif(TEST_DATABASE != "postgresql", reason="SQLite's driver begins no transaction for a SELECT")
def test_read_only_pages_query_outside_a_transaction_and_other_requests_inside_one(app, world, web):
    from webapp.extensions import db
    a = world["clinic_a"].id
    owner = web("owner-a@test")
    for path in (f"/c/{a}/", f"/c/{a}/runs", f"/c/{a}/customers/warnings"):
        flags = _backend_statements(db, lambda: owner.get(path))
        assert flags and all(flags), path  # every query of the page, the user's included
    flags = _backend_statements(db, lambda: owner.get(f"/c/{a}/integration"))
    assert flags and not any(flags)  # not marked: a transaction as before


def test_a_read_only_view_that_writes_fails_instead_of_committing(app, world, web, monkeypatch):
    from webapp.blueprints import dashboard
    from webapp.models import AuditLog
    from webapp.read_only import ReadOnlyViolation
    a = world["clinic_a"].id

    def writes(clinic):
        from webapp.extensions import db
        db.session.add(AuditLog(action="x", detail="from a read-only view", clinic_id=a))
        db.session.flush()
        return {}
    monkeypatch.setattr(dashboard, "dashboard_context", writes)
    owner = web("owner-a@test")
    with pytest.raises(ReadOnlyViolation):
        owner.get(f"/c/{a}/")
    from webapp.extensions import db
    assert db.session.query(AuditLog).filter_by(detail="from a read-only view").count() == 0
