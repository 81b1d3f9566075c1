"""Record warnings: what to fix per customer before billing fails."""
from __future__ import annotations

import csv
import io

from flask import Blueprint, Response, abort, render_template, request
from flask_login import login_required
from sqlalchemy import select

from ..access import clinic_scope
from ..extensions import db
from ..models import Binding, Customer, Integration
from ..views import active_integration, health_summary, keyset

bp = Blueprint("customers", __name__)
PER_PAGE = 50


def _filtered(clinic_id: int):
    q = select(Customer).where(Customer.clinic_id == clinic_id)
    severity = request.args.get("severity", "problems")
    if severity == "errors":
        q = q.where(Customer.health_errors > 0)
    elif severity == "warnings":
        q = q.where(Customer.health_errors == 0, Customer.health_warnings > 0)
    elif severity == "problems":
        q = q.where((Customer.health_errors > 0) | (Customer.health_warnings > 0))
    search = (request.args.get("q") or "").strip()
    if search:
        q = q.where(Customer.name.ilike(f"%{search}%") | (Customer.tax_id == search.replace(".", "").replace("-", "").replace("/", "").upper()))
    return q, severity, search


@bp.route("/c/<int:clinic_id>/customers/warnings")
@login_required
def warnings(clinic_id: int):
    clinic = clinic_scope(clinic_id)
    q, severity, search = _filtered(clinic.id)
    code = request.args.get("code", "")
    after = request.args.get("after", type=int)
    rows, next_after = keyset(q, Customer.id, after, PER_PAGE)
    if code:
        rows = [c for c in rows if any(p["code"] == code for p in c.health_problems or [])]
    summary = health_summary(clinic.id)
    counts = problem_counts(clinic.id)
    return render_template("customers/warnings.html", clinic=clinic, customers=rows, next_after=next_after,
                           severity=severity, search=search, code=code, summary=summary, counts=counts)


def problem_counts(clinic_id: int) -> list[tuple[str, str, int]]:
    """(code, severity, count) over the clinic's customers with problems."""
    counts: dict[tuple[str, str], int] = {}
    for problems in db.session.scalars(select(Customer.health_problems).where(
            Customer.clinic_id == clinic_id, (Customer.health_errors > 0) | (Customer.health_warnings > 0))):
        for p in problems or []:
            key = (p["code"], p["severity"])
            counts[key] = counts.get(key, 0) + 1
    return sorted(((c, s, n) for (c, s), n in counts.items()), key=lambda t: (t[1] != "error", -t[2]))


@bp.route("/c/<int:clinic_id>/customers/warnings.csv")
@login_required
def warnings_csv(clinic_id: int):
    clinic = clinic_scope(clinic_id)
    q, _, _ = _filtered(clinic.id)

    def rows():
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["customer_id", "name", "tax_id", "field", "code", "severity", "message"])
        yield buf.getvalue()
        for c in db.session.scalars(q.order_by(Customer.id).execution_options(yield_per=1000)):
            buf.seek(0), buf.truncate()
            for p in c.health_problems or []:
                w.writerow([c.external_id, c.name, c.tax_id, p["field"], p["code"], p["severity"], p["message"]])
            yield buf.getvalue()

    return Response(rows(), mimetype="text/csv",
                    headers={"Content-Disposition": f"attachment; filename=record-warnings-{clinic.id}.csv"})


@bp.route("/c/<int:clinic_id>/customers/<int:customer_id>")
@login_required
def detail(clinic_id: int, customer_id: int):
    clinic = clinic_scope(clinic_id)
    c = db.session.scalar(select(Customer).where(Customer.id == customer_id, Customer.clinic_id == clinic.id))
    if c is None:
        abort(404)
    integration = active_integration(clinic.id)
    binding = None
    if integration:
        binding = db.session.scalar(select(Binding).where(Binding.integration_id == integration.id,
                                                          Binding.entity == "customer", Binding.local_id == c.id))
    return render_template("customers/detail.html", clinic=clinic, customer=c, integration=integration,
                           binding=binding)
