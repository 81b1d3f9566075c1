"""Views that only read (the pages P4 and P6 measure): on PostgreSQL their queries run outside a
transaction, on a connection in autocommit.

A request's first query otherwise costs an extra round trip for BEGIN and its end one for
ROLLBACK: on a page of two queries, four round trips instead of two (with the pool's check, five
instead of three). Nothing is lost for a reader: at READ COMMITTED, PostgreSQL's default and
ours, each statement already sees its own snapshot, inside a transaction or not. A view marked
`@reads_only` that tries to write anyway (an ORM flush, or an INSERT, UPDATE or DELETE through the
session) fails loudly instead of committing statement by statement. SQLite is left as it is: its
driver begins no transaction for a SELECT.
"""
from __future__ import annotations

from flask import current_app, has_request_context, request
from flask_sqlalchemy.session import Session
from sqlalchemy import event

_AUTOCOMMIT: dict[object, object] = {}  # engine -> the same engine (same pool) in autocommit


class ReadOnlyViolation(RuntimeError):
    """A view marked @reads_only tried to write."""


def reads_only(view):
    """Mark a view function as one that never writes (see the module's docstring)."""
    view.reads_only = True
    return view


def in_read_only_view() -> bool:
    if not has_request_context():
        return False
    view = current_app.view_functions.get(request.endpoint or "")
    return bool(getattr(view, "reads_only", False))


class PageSession(Session):
    """db.session: Flask-SQLAlchemy's, with a read-only view's queries on an autocommit connection."""

    def get_bind(self, mapper=None, clause=None, bind=None, **kwargs):
        engine = super().get_bind(mapper=mapper, clause=clause, bind=bind, **kwargs)
        if bind is None and engine.dialect.name == "postgresql" and in_read_only_view():
            auto = _AUTOCOMMIT.get(engine)
            if auto is None:
                auto = _AUTOCOMMIT[engine] = engine.execution_options(isolation_level="AUTOCOMMIT")
            return auto
        return engine


@event.listens_for(PageSession, "before_flush")
def _no_flush(session, _flush_context, _instances) -> None:
    if in_read_only_view() and (session.new or session.dirty or session.deleted):
        raise ReadOnlyViolation(f"{request.endpoint} is marked @reads_only but changes rows")


@event.listens_for(PageSession, "do_orm_execute")
def _no_write(state) -> None:
    if (state.is_insert or state.is_update or state.is_delete) and in_read_only_view():
        raise ReadOnlyViolation(f"{request.endpoint} is marked @reads_only but writes")
