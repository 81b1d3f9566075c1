"""Who may see what: roles on every route, every query scoped to the clinic."""
from __future__ import annotations

from functools import wraps

from flask import abort
from flask_login import current_user, login_required

from .extensions import db, login_manager
from .models import AuditLog, Clinic, User


@login_manager.user_loader
def load_user(user_id: str):
    return db.session.get(User, int(user_id))


def support_required(view):
    @wraps(view)
    @login_required
    def wrapper(*args, **kwargs):
        if not current_user.is_support:
            abort(403)
        return view(*args, **kwargs)
    return wrapper


def clinic_scope(clinic_id: int) -> Clinic:
    """The clinic a page is about; owners reach only their own clinic, support any."""
    if not current_user.is_authenticated:
        abort(401)
    if not current_user.is_support and current_user.clinic_id != clinic_id:
        abort(403)
    clinic = db.session.get(Clinic, clinic_id)
    if clinic is None:
        abort(404)
    return clinic


def audit(action: str, detail: str = "", clinic_id: int | None = None) -> None:
    """Add an audit row to the current transaction (never with secret values)."""
    db.session.add(AuditLog(user_id=getattr(current_user, "id", None),
                            user_email=getattr(current_user, "email", "") or "",
                            clinic_id=clinic_id, action=action, detail=detail))
