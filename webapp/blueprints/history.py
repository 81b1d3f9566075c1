"""Sync history: every run, and a run's per-record outcomes with the ERP's reason."""
from __future__ import annotations

from datetime import timedelta

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext
from flask_login import login_required
from sqlalchemy import select

from integrations.registry import CONNECTORS, connector_class

from ..access import audit, clinic_scope
from ..sync.retry import NothingToRetry, retry_failed
from ..extensions import db
from ..models import SyncRecord, SyncRun, utcnow
from ..views import keyset
from ..params import row_id

bp = Blueprint("history", __name__)
PER_PAGE = 50
PERIODS = {"24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30), "90d": timedelta(days=90)}


@bp.route("/c/<int:clinic_id>/runs")
@login_required
def runs(clinic_id: int):
    clinic = clinic_scope(clinic_id)
    q = select(SyncRun).where(SyncRun.clinic_id == clinic.id)
    direction = request.args.get("direction", "")
    status = request.args.get("status", "")
    period = request.args.get("period", "")
    erp = request.args.get("erp", "")
    if direction in ("push", "pull"):
        q = q.where(SyncRun.direction == direction)
    if status:
        q = q.where(SyncRun.status == status)
    if period in PERIODS:
        q = q.where(SyncRun.queued_at >= utcnow() - PERIODS[period])
    if erp in CONNECTORS:
        q = q.where(SyncRun.erp == erp)
    rows, next_after = keyset(q, SyncRun.id, request.args.get("after", type=row_id), PER_PAGE, plain=True)
    return render_template("history/runs.html", clinic=clinic, runs=rows, next_after=next_after,
                           direction=direction, status=status, period=period if period in PERIODS else "",
                           erp=erp if erp in CONNECTORS else "", erps=[connector_class(n) for n in CONNECTORS])


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
    rows, next_after = keyset(q, SyncRecord.id, request.args.get("after", type=row_id), PER_PAGE, descending=False,
                              plain=True)
    return render_template("history/run.html", clinic=clinic, run=run, records=rows, next_after=next_after,
                           outcome=outcome)


@bp.route("/c/<int:clinic_id>/runs/<int:run_id>/retry", methods=["POST"])
@login_required
def retry(clinic_id: int, run_id: int):
    """Retry one failed record (record_id) or all failed records of the run."""
    clinic = clinic_scope(clinic_id)
    run = db.session.scalar(select(SyncRun).where(SyncRun.id == run_id, SyncRun.clinic_id == clinic.id))
    if run is None:
        abort(404)
    record_id = request.form.get("record_id", type=row_id)
    if record_id is None and request.form.get("record_id", "").strip():
        abort(400, gettext("That is not a record of this run."))  # never widened to "all failed records"
    try:
        new = retry_failed(run, record_id)
    except NothingToRetry as exc:
        flash(str(exc), "error")
        return redirect(url_for("history.run", clinic_id=clinic.id, run_id=run.id))
    audit("run.retried", f"run {run.id}: {'record ' + str(record_id) if record_id else 'all failed records'} -> run {new.id}",
          clinic.id)
    db.session.commit()
    flash(gettext("Retrying %(total)s record(s) in run #%(run)s.", total=new.total, run=new.id), "success")
    return redirect(url_for("history.run", clinic_id=clinic.id, run_id=new.id))
