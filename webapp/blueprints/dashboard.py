"""The owner's dashboard: integration status, what it does, record health, recent runs."""
from __future__ import annotations

from flask import Blueprint, render_template
from flask_login import login_required

from ..access import clinic_scope
from ..read_only import reads_only
from ..views import dashboard_context

bp = Blueprint("dashboard", __name__)


@bp.route("/c/<int:clinic_id>/")
@login_required
@reads_only
def show(clinic_id: int):
    clinic = clinic_scope(clinic_id)
    return render_template("dashboard/show.html", clinic=clinic, **dashboard_context(clinic))
