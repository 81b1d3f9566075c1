"""Support's home: every clinic with its integration status; the audit log; notifications."""
from __future__ import annotations

from flask import Blueprint, render_template, request
from sqlalchemy import select

from ..access import support_required
from ..extensions import db
from ..models import AuditLog, Clinic, Integration, Notification
from ..views import integration_status, keyset
from ..params import row_id

bp = Blueprint("support", __name__)


@bp.route("/support/clinics")
@support_required
def clinics():
    search = (request.args.get("q") or "").strip()
    q = select(Clinic)
    if search:
        q = q.where(Clinic.name.ilike(f"%{search}%"))
    rows, next_after = keyset(q, Clinic.id, request.args.get("after", type=row_id), 50)
    integrations = {}
    if rows:
        for i in db.session.scalars(select(Integration).where(Integration.clinic_id.in_([c.id for c in rows]))):
            if i.enabled or i.clinic_id not in integrations:
                integrations[i.clinic_id] = i
    statuses = {cid: integration_status(i) for cid, i in integrations.items()}
    notices = db.session.scalars(select(Notification).where(Notification.read.is_(False))
                                 .order_by(Notification.id.desc()).limit(20)).all()
    return render_template("support/clinics.html", clinics=rows, integrations=integrations, statuses=statuses,
                           next_after=next_after, search=search, notices=notices)


@bp.route("/support/audit")
@support_required
def audit_log():
    rows, next_after = keyset(select(AuditLog), AuditLog.id, request.args.get("after", type=row_id), 100)
    return render_template("support/audit.html", entries=rows, next_after=next_after)
