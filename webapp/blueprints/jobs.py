"""HTMX partials polled while a run is in progress; polling stops when the run ends."""
from __future__ import annotations

from flask import Blueprint, abort, make_response, request
from flask_login import current_user, login_required

from ..read_only import reads_only
from ..run_progress import run_progress
from ..views import run_or_404

bp = Blueprint("jobs", __name__)


@bp.route("/c/<int:clinic_id>/runs/<int:run_id>/progress")
@login_required
@reads_only
def progress(clinic_id: int, run_id: int):
    """Polled every second by every open page: one query when nothing changed (304)."""
    if not current_user.is_support and current_user.clinic_id != clinic_id:
        abort(403)
    run = run_or_404(clinic_id, run_id)
    etag = f"{run.id}-{run.status}-{run.done}-{run.failed}-{len(run.error or '')}"
    if request.if_none_match.contains(etag) and not run.finished:
        resp = make_response("", 304)
    else:
        resp = make_response(str(run_progress(run, clinic_id)))
    resp.set_etag(etag)
    resp.headers["Cache-Control"] = "no-cache"
    return resp
