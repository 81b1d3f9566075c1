"""Sync history: every run, and a run's per-record outcomes with the ERP's reason."""
from __future__ import annotations

from datetime import timedelta

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext
from flask_login import login_required
from sqlalchemy import bindparam, select

from integrations.registry import CONNECTORS, connector_class

from ..access import audit, clinic_scope
from ..sync.retry import NothingToRetry, retry_failed
from ..extensions import db
from ..models import SyncRun, utcnow
from ..table_rows import RECORD_COLUMNS, RUN_COLUMNS
from ..views import keyset, prepared, run_or_404, run_page
from ..params import row_id
from ..read_only import reads_only

bp = Blueprint("history", __name__)
PER_PAGE = 50
PERIODS = {"24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30), "90d": timedelta(days=90)}


# each filter as a condition on its bindparam; a request's statement is prepared once per set of them
_RUN_FILTERS = {"direction": SyncRun.direction == bindparam("direction"), "status": SyncRun.status == bindparam("status"),
                "since": SyncRun.queued_at >= bindparam("since"), "erp": SyncRun.erp == bindparam("erp")}


def _runs_query(filters: tuple[str, ...]):
    return select(SyncRun).where(SyncRun.clinic_id == bindparam("clinic_id"), *(_RUN_FILTERS[f] for f in filters))


@bp.route("/c/<int:clinic_id>/runs")
@login_required
@reads_only
def runs(clinic_id: int):
    clinic = clinic_scope(clinic_id)
    direction = request.args.get("direction", "")
    status = request.args.get("status", "")
    period = request.args.get("period", "")
    erp = request.args.get("erp", "")
    values = {"direction": direction if direction in ("push", "pull") else "", "status": status,
              "since": utcnow() - PERIODS[period] if period in PERIODS else None, "erp": erp if erp in CONNECTORS else ""}
    values = {name: value for name, value in values.items() if value}
    shape = ("runs", *values)
    rows, next_after = keyset(prepared(shape, lambda: _runs_query(tuple(values))), SyncRun.id,
                              request.args.get("after", type=row_id), PER_PAGE, columns=RUN_COLUMNS,
                              params={"clinic_id": clinic.id, **values}, shape=shape)
    return render_template("history/runs.html", clinic=clinic, runs=rows, next_after=next_after,
                           direction=direction, status=status, period=period if period in PERIODS else "",
                           erp=erp if erp in CONNECTORS else "", erps=tuple((n, connector_class(n).label) for n in CONNECTORS))


@bp.route("/c/<int:clinic_id>/runs/<int:run_id>")
@login_required
@reads_only
def run(clinic_id: int, run_id: int):
    clinic = clinic_scope(clinic_id)
    outcome = request.args.get("outcome", "")
    run, rows, next_after = run_page(clinic.id, run_id, outcome, request.args.get("after", type=row_id), PER_PAGE,
                                     RECORD_COLUMNS)
    return render_template("history/run.html", clinic=clinic, run=run, records=rows, next_after=next_after,
                           outcome=outcome)


@bp.route("/c/<int:clinic_id>/runs/<int:run_id>/retry", methods=["POST"])
@login_required
def retry(clinic_id: int, run_id: int):
    """Retry one failed record (record_id) or all failed records of the run."""
    clinic = clinic_scope(clinic_id)
    run = run_or_404(clinic.id, run_id)
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
