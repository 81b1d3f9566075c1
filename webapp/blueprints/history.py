"""Sync history: every run, and a run's per-record outcomes with the ERP's reason."""
from __future__ import annotations

from flask import Blueprint, abort, render_template, request
from flask_login import login_required
from sqlalchemy import select

from ..access import clinic_scope
from ..extensions import db
from ..models import SyncRecord, SyncRun
from ..views import keyset

bp = Blueprint("history", __name__)
PER_PAGE = 50


@bp.route("/c/<int:clinic_id>/runs")
@login_required
def runs(clinic_id: int):
    clinic = clinic_scope(clinic_id)
    q = select(SyncRun).where(SyncRun.clinic_id == clinic.id)
    direction = request.args.get("direction", "")
    status = request.args.get("status", "")
    if direction in ("push", "pull"):
        q = q.where(SyncRun.direction == direction)
    if status:
        q = q.where(SyncRun.status == status)
    rows, next_after = keyset(q, SyncRun.id, request.args.get("after", type=int), PER_PAGE)
    return render_template("history/runs.html", clinic=clinic, runs=rows, next_after=next_after,
                           direction=direction, status=status)


@bp.route("/c/<int:clinic_id>/runs/<int:run_id>")
@login_required
def run(clinic_id: int, run_id: int):
    clinic = clinic_scope(clinic_id)
    run = db.session.scalar(select(SyncRun).where(SyncRun.id == run_id, SyncRun.clinic_id == clinic.id))
    if run is None:
        abort(404)
    q = select(SyncRecord).where(SyncRecord.run_id == run.id)
    outcome = request.args.get("outcome", "")
    if outcome:
        q = q.where(SyncRecord.outcome == outcome)
    rows, next_after = keyset(q, SyncRecord.id, request.args.get("after", type=int), PER_PAGE, descending=False)
    return render_template("history/run.html", clinic=clinic, run=run, records=rows, next_after=next_after,
                           outcome=outcome)
