"""Who may see what: roles on every route, every query scoped to the clinic."""
from __future__ import annotations

from functools import wraps
from typing import NamedTuple

from flask import abort
from flask_login import UserMixin, current_user, login_required
from sqlalchemy import event, select, text

from .extensions import db, login_manager
from .local_copies import copies, drop_everywhere
from .models import AuditLog, Clinic, User
from .read_only import PageSession

_CLINICS = Clinic.__table__.c


class ClinicRef(NamedTuple):
    """The clinic a page is about, as pages use it (its id and name): read-only."""
    id: int
    name: str


class SessionUser(UserMixin):
    """The logged-in person as a request sees them, read with one plain SELECT (their clinic's
    name joined): building the ORM object, then the clinic's, cost a page more than a sixth of its
    time. Views that change a user load the `User` row itself."""

    __slots__ = ("id", "email", "name", "role", "clinic_id", "clinic_name")

    def __init__(self, id: int, email: str, name: str, role: str, clinic_id: int | None, clinic_name: str | None):
        self.id, self.email, self.name, self.role = id, email, name, role
        self.clinic_id, self.clinic_name = clinic_id, clinic_name

    @property
    def is_support(self) -> bool:
        return self.role == "support"


# plain SQL: SQLAlchemy walks a select() to find its compiled form on every execution, and that
# walk was a fifth of this statement's time
_LOAD_USER = text("SELECT u.id, u.email, u.name, u.role, u.clinic_id, c.name FROM users u "
                  "LEFT JOIN clinics c ON c.id = u.clinic_id WHERE u.id = :id")


@login_manager.user_loader
def load_user(user_id: str) -> SessionUser | None:
    """The user of this request: this process's copy (kept up to local_copies.KEEP_SECONDS, and
    dropped in every process as soon as a User or a Clinic changes through the app: see
    _changed_people below), else the database's."""
    try:
        uid = int(user_id)
    except (TypeError, ValueError):
        return None
    key = f"{_USER_KEY}{uid}"
    hit = copies.get(key)
    if hit is not None:
        return SessionUser(*hit[1])
    generation = copies.generation
    row = db.session.execute(_LOAD_USER, {"id": uid}).first()
    if row is None:
        return None  # gone: nothing kept, the next request asks again
    copies.ensure_listener()
    copies.keep(key, tuple(row), generation)
    return SessionUser(*row)


_USER_KEY = "tecpet:user:"


# Every change to a user or a clinic that goes through the ORM drops the kept users once committed:
# the user's own copy, or every user's for a clinic (its name is part of each of its users' rows).
@event.listens_for(PageSession, "after_flush")
def _changed_people(session, _flush_context) -> None:
    changed = session.info.setdefault("tecpet_people_changed", set())
    for obj in (*session.dirty, *session.deleted):
        if isinstance(obj, User):
            changed.add(f"{_USER_KEY}{obj.id}")
        elif isinstance(obj, Clinic):
            changed.add(f"{_USER_KEY}*")


@event.listens_for(PageSession, "after_commit")
def _drop_changed_people(session) -> None:
    changed = session.info.pop("tecpet_people_changed", None)
    if changed:
        drop_everywhere(sorted(changed))


@event.listens_for(PageSession, "after_rollback")
def _forget_changed_people(session) -> None:
    session.info.pop("tecpet_people_changed", None)


def support_required(view):
    @wraps(view)
    @login_required
    def wrapper(*args, **kwargs):
        if not current_user.is_support:
            abort(403)
        return view(*args, **kwargs)
    return wrapper


def clinic_scope(clinic_id: int) -> ClinicRef:
    """The clinic a page is about; owners reach only their own clinic (already read with them),
    support any."""
    if not current_user.is_authenticated:
        abort(401)
    if not current_user.is_support:
        if current_user.clinic_id != clinic_id:
            abort(403)
        # a SessionUser carries the name; the `User` that login_user() set for the rest of its own
        # request (or of an app context a caller keeps open) does not
        name = getattr(current_user, "clinic_name", None)
        if name is not None:
            return ClinicRef(clinic_id, name)
    row = db.session.execute(select(_CLINICS.id, _CLINICS.name).where(_CLINICS.id == clinic_id)).first()
    if row is None:
        abort(404)
    return ClinicRef(*row)


def audit(action: str, detail: str = "", clinic_id: int | None = None) -> None:
    """Add an audit row to the current transaction (never with secret values)."""
    db.session.add(AuditLog(user_id=getattr(current_user, "id", None),
                            user_email=getattr(current_user, "email", "") or "",
                            clinic_id=clinic_id, action=action, detail=detail))
