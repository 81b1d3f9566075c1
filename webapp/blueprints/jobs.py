"""HTMX partials polled while a run is in progress; polling stops when the run ends."""
from __future__ import annotations

from flask import Blueprint, abort, render_template
from flask_login import login_required
from sqlalchemy import select

from ..access import clinic_scope
from ..extensions import db
from ..models import SyncRun

bp = Blueprint("jobs", __name__)


@bp.route("/c/<int:clinic_id>/runs/<int:run_id>/progress")
@login_required
def progress(clinic_id: int, run_id: int):
    clinic = clinic_scope(clinic_id)
    run = db.session.scalar(select(SyncRun).where(SyncRun.id == run_id, SyncRun.clinic_id == clinic.id))
    if run is None:
        abort(404)
    return render_template("partials/run_progress.html", clinic=clinic, run=run)
