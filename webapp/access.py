"""Who may see what: roles on every route, every query scoped to the clinic."""
from __future__ import annotations

from functools import wraps
from typing import NamedTuple

from flask import abort
from flask_login import UserMixin, current_user, login_required
from sqlalchemy import select, text

from .extensions import db, login_manager
from .models import AuditLog, Clinic

_CLINICS = Clinic.__table__.c


class ClinicRef(NamedTuple):
    """The clinic a page is about, as pages use it (its id and name): read-only."""
    id: int
    name: str


class SessionUser(UserMixin):
    """The logged-in person as a request sees them, read on every request with one plain SELECT
    (their clinic's name joined): building the ORM object, then the clinic's, cost a page more than
    a sixth of its time. Views that change a user load the `User` row itself."""

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
    try:
        uid = int(user_id)
    except (TypeError, ValueError):
        return None
    row = db.session.execute(_LOAD_USER, {"id": uid}).first()
    return SessionUser(*row) if row is not None else None


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
