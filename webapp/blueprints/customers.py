"""Record warnings: what to fix per customer before billing fails."""
from __future__ import annotations

import csv
import io

from flask import Blueprint, Response, abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext
from flask_login import login_required
from sqlalchemy import bindparam, select

from .. import divergence_actions
from ..access import clinic_scope
from ..extensions import db
from ..models import Binding, Customer, CustomerProblem
from ..record_health import divergence
from ..table_rows import WARNING_COLUMNS
from ..views import active_integration, health_and_problems, keyset, prepared
from ..params import row_id
from ..read_only import reads_only

bp = Blueprint("customers", __name__)
PER_PAGE = 50


_SEVERITY = {"errors": Customer.health_errors > 0,
             "warnings": (Customer.health_errors == 0) & (Customer.health_warnings > 0),
             "problems": (Customer.health_errors > 0) | (Customer.health_warnings > 0)}
_WITH_CODE = Customer.id.in_(select(CustomerProblem.customer_id).where(
    CustomerProblem.clinic_id == bindparam("clinic_id"), CustomerProblem.code == bindparam("code")))
_SEARCH = Customer.name.ilike(bindparam("pattern")) | (Customer.tax_id == bindparam("tax_id"))


def _filtered(clinic_id: int):
    """The customers the page's filters select, as (query, its bindparams, its shape, severity,
    search): the query is prepared once per shape (views.prepared)."""
    severity = request.args.get("severity", "problems")
    code = request.args.get("code", "")
    search = (request.args.get("q") or "").strip()
    params = {"clinic_id": clinic_id}
    if code:
        params["code"] = code
    if search:
        params.update(pattern=f"%{search}%", tax_id=search.replace(".", "").replace("-", "").replace("/", "").upper())
    shape = ("warnings", severity if severity in _SEVERITY else "", bool(code), bool(search))

    def build():
        q = select(Customer).where(Customer.clinic_id == bindparam("clinic_id"))
        if severity in _SEVERITY:
            q = q.where(_SEVERITY[severity])
        if code:
            q = q.where(_WITH_CODE)
        if search:
            q = q.where(_SEARCH)
        return q
    return prepared(shape, build), params, shape, severity, search


@bp.route("/c/<int:clinic_id>/customers/warnings")
@login_required
@reads_only
def warnings(clinic_id: int):
    clinic = clinic_scope(clinic_id)
    q, params, shape, severity, search = _filtered(clinic.id)
    code = request.args.get("code", "")
    rows, next_after = keyset(q, Customer.id, request.args.get("after", type=row_id), PER_PAGE,
                              columns=WARNING_COLUMNS, params=params, shape=shape)
    summary, counts = health_and_problems(clinic.id)
    return render_template("customers/warnings.html", clinic=clinic, customers=rows, next_after=next_after,
                           severity=severity, search=search, code=code, summary=summary, counts=counts)


@bp.route("/c/<int:clinic_id>/customers/warnings.csv")
@login_required
def warnings_csv(clinic_id: int):
    clinic = clinic_scope(clinic_id)
    q, params, _, _, _ = _filtered(clinic.id)
    app = current_app._get_current_object()

    def rows():
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["customer_id", "name", "tax_id", "field", "code", "severity", "message"])
        yield buf.getvalue()
        # the server writes the body after the view has returned and its context is gone: the rows
        # are read in an app context (and a session) of their own
        with app.app_context():
            for c in db.session.scalars(q.order_by(Customer.id).execution_options(yield_per=1000), params):
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
                           binding=binding, diff=divergence(c, binding))


@bp.route("/c/<int:clinic_id>/customers/<int:customer_id>/resolve", methods=["POST"])
@login_required
def resolve(clinic_id: int, customer_id: int):
    """Divergence: push TecPet's version to the ERP, or take the ERP's version into TecPet."""
    clinic = clinic_scope(clinic_id)
    c, integration, binding = _bound(clinic.id, customer_id)
    action = request.form.get("action")
    if action == "push_tecpet":
        divergence_actions.push_tecpet_version(integration, c, binding)
        flash(gettext("TecPet's version is queued to be sent to the ERP."), "success")
    elif action == "take_erp":
        if not binding.remote_copy:
            abort(409, gettext("The ERP's copy has not been read yet: verify first."))
        divergence_actions.take_erp_version(integration, c, binding)
        flash(gettext("The ERP's version was taken into TecPet; TecPet core is notified."), "success")
    else:
        abort(400)
    return redirect(url_for("customers.detail", clinic_id=clinic.id, customer_id=c.id))


@bp.route("/c/<int:clinic_id>/customers/<int:customer_id>/verify", methods=["POST"])
@login_required
def verify(clinic_id: int, customer_id: int):
    clinic = clinic_scope(clinic_id)
    c, integration, _ = _bound(clinic.id, customer_id)
    divergence_actions.request_verify(integration, [c.id])
    flash(gettext("Reading this customer back from the ERP."), "success")
    return redirect(url_for("customers.detail", clinic_id=clinic.id, customer_id=c.id))


def _bound(clinic_id: int, customer_id: int):
    c = db.session.scalar(select(Customer).where(Customer.id == customer_id, Customer.clinic_id == clinic_id))
    integration = active_integration(clinic_id)
    if c is None or integration is None:
        abort(404)
    binding = db.session.scalar(select(Binding).where(Binding.integration_id == integration.id,
                                                      Binding.entity == "customer", Binding.local_id == c.id,
                                                      Binding.state == "bound"))
    if binding is None:
        abort(409, gettext("This customer is not linked to an ERP record yet."))
    return c, integration, binding
