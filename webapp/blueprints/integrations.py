"""Integration setup (support only) and the read-only integration page (owners)."""
from __future__ import annotations

import secrets

from flask import Blueprint, abort, flash, redirect, render_template, request, session, url_for
from flask_babel import gettext
from flask_login import current_user, login_required
from sqlalchemy import select

from integrations.base import ConnectorError, capability_panel
from integrations.registry import CONNECTORS, connector_class

from .. import credentials, integration_setup
from ..access import audit, clinic_scope, support_required
from ..extensions import db
from ..models import Integration
from ..sync import outbox
from ..sync.connectors import build_connector
from ..views import active_integration, integration_status

bp = Blueprint("integrations", __name__)


def _erp_arg() -> str:
    erp = request.args.get("erp") or request.form.get("erp") or ""
    if erp not in CONNECTORS:
        abort(404)
    return erp


def _integration(clinic_id: int, erp: str) -> Integration | None:
    return db.session.scalar(select(Integration).where(Integration.clinic_id == clinic_id, Integration.erp == erp))


@bp.route("/c/<int:clinic_id>/integration")
@login_required
def show(clinic_id: int):
    clinic = clinic_scope(clinic_id)
    integration = active_integration(clinic.id)
    status, why = integration_status(integration)
    cls = connector_class(integration.erp) if integration else None
    return render_template("integrations/show.html", clinic=clinic, integration=integration, status=status,
                           status_why=why, connector=cls, panel=capability_panel(cls) if cls else [],
                           erps=[connector_class(n) for n in CONNECTORS])


@bp.route("/c/<int:clinic_id>/integration/setup", methods=["GET", "POST"])
@support_required
def setup(clinic_id: int):
    clinic = clinic_scope(clinic_id)
    erp = _erp_arg()
    integration = _integration(clinic.id, erp)
    cls = connector_class(erp)
    form = integration_setup.setup_form(erp, integration, formdata=request.form if request.method == "POST" else None)
    errors: list[str] = []
    if request.method == "POST":
        if form.validate():
            creds, settings, features, errors = integration_setup.read_form(erp, form, integration)
            if not errors:
                enable = request.form.get("action") != "save_disabled"
                integration_setup.save(clinic, erp, creds, settings, features, enable)
                flash(gettext("%(erp)s integration saved and enabled; the first customer sync is queued.", erp=cls.label)
                      if enable else gettext("%(erp)s integration saved (disabled).", erp=cls.label), "success")
                return redirect(url_for("integrations.show", clinic_id=clinic.id))
        else:
            errors = [f"{getattr(form, name).label.text}: {', '.join(msgs)}" for name, msgs in form.errors.items()]
    return render_template("integrations/setup.html", clinic=clinic, connector=cls, form=form, integration=integration,
                           erp=erp, errors=errors, panel=capability_panel(cls),
                           demo_credentials=integration_setup.demo_credentials(erp)), (422 if errors else 200)


@bp.route("/c/<int:clinic_id>/integration/test", methods=["POST"])
@support_required
def test(clinic_id: int):
    clinic = clinic_scope(clinic_id)
    erp = _erp_arg()
    integration = _integration(clinic.id, erp)
    form = integration_setup.setup_form(erp, integration, formdata=request.form)
    form.validate()
    creds, settings, _, errors = integration_setup.read_form(erp, form, integration)
    if errors:
        ok, message = False, " ".join(errors)
    else:
        ok, message = integration_setup.test_connection(erp, creds, settings, integration)
    audit("integration.tested", f"{erp}: {'ok' if ok else 'failed'}", clinic.id)
    db.session.commit()
    return render_template("partials/test_result.html", ok=ok, message=message)


@bp.route("/c/<int:clinic_id>/integration/<int:integration_id>/pull", methods=["POST"])
@support_required
def pull_now(clinic_id: int, integration_id: int):
    clinic = clinic_scope(clinic_id)
    integration = db.session.scalar(select(Integration).where(Integration.id == integration_id,
                                                              Integration.clinic_id == clinic.id))
    if integration is None:
        abort(404)
    outbox.request_pull(integration, trigger="manual")
    audit("pull.requested", integration.erp, clinic.id)
    db.session.commit()
    outbox.dispatch()
    flash(gettext("Pull queued."), "success")
    return redirect(url_for("history.runs", clinic_id=clinic.id))


@bp.route("/c/<int:clinic_id>/integration/<int:integration_id>/sync", methods=["POST"])
@support_required
def full_sync(clinic_id: int, integration_id: int):
    clinic = clinic_scope(clinic_id)
    integration = db.session.scalar(select(Integration).where(Integration.id == integration_id,
                                                              Integration.clinic_id == clinic.id))
    if integration is None:
        abort(404)
    outbox.record(clinic.id, "sync.initial", integration_id=integration.id, trigger="manual")
    audit("sync.requested", integration.erp, clinic.id)
    db.session.commit()
    outbox.dispatch()
    flash(gettext("Customer sync queued."), "success")
    return redirect(url_for("history.runs", clinic_id=clinic.id))


@bp.route("/c/<int:clinic_id>/integration/<int:integration_id>/state", methods=["POST"])
@support_required
def set_state(clinic_id: int, integration_id: int):
    clinic = clinic_scope(clinic_id)
    integration = db.session.scalar(select(Integration).where(Integration.id == integration_id,
                                                              Integration.clinic_id == clinic.id))
    if integration is None:
        abort(404)
    action = request.form.get("action")
    if action == "disable":
        integration.enabled = False
        audit("integration.disabled", integration.erp, clinic.id)
    elif action == "enable":
        integration.enabled = True
        audit("integration.enabled", integration.erp, clinic.id)
    elif action == "resume":
        integration.paused_reason, integration.consecutive_failures = "", 0
        audit("integration.resumed", integration.erp, clinic.id)
    else:
        abort(400)
    db.session.commit()
    flash({"disable": gettext("Integration disabled."), "enable": gettext("Integration enabled."),
           "resume": gettext("Integration resumed.")}[action], "success")
    return redirect(url_for("integrations.show", clinic_id=clinic.id))


@bp.route("/c/<int:clinic_id>/integration/oauth/start", methods=["POST"])
@support_required
def oauth_start(clinic_id: int):
    """Send support to the ERP's authorize page; the callback stores the tokens encrypted."""
    clinic = clinic_scope(clinic_id)
    erp = _erp_arg()
    integration = _integration(clinic.id, erp)
    if integration is None or not integration.credentials_encrypted:
        flash(gettext("Save the app's client id and secret first."), "error")
        return redirect(url_for("integrations.setup", clinic_id=clinic.id, erp=erp))
    state = secrets.token_urlsafe(24)
    session["oauth_state"] = {"state": state, "clinic_id": clinic.id, "erp": erp}
    connector = build_connector(integration)
    return redirect(connector.authorize_url(_redirect_uri(), state))


def _redirect_uri() -> str:
    return url_for("integrations.oauth_callback", _external=True)


@bp.route("/integrations/oauth/callback")
@support_required
def oauth_callback():
    expected = session.pop("oauth_state", None)
    if not expected or request.args.get("state") != expected["state"]:
        abort(400, gettext("The authorization answer does not match the request that started it. Start again."))
    clinic = clinic_scope(expected["clinic_id"])
    integration = _integration(clinic.id, expected["erp"])
    if integration is None:
        abort(404)
    if request.args.get("error") or not request.args.get("code"):
        flash(gettext("The ERP did not authorize: %(reason)s",
                reason=request.args.get("error_description") or request.args.get("error") or gettext("no code")), "error")
        return redirect(url_for("integrations.setup", clinic_id=clinic.id, erp=integration.erp))
    connector = build_connector(integration)
    try:
        tokens = connector.exchange_code(request.args["code"], _redirect_uri())
    except ConnectorError as exc:
        flash(gettext("Authorization failed: %(reason)s", reason=exc.plain()), "error")
        return redirect(url_for("integrations.setup", clinic_id=clinic.id, erp=integration.erp))
    creds = credentials.decrypt(integration.credentials_encrypted)
    creds.update(tokens)
    integration.credentials_encrypted = credentials.encrypt(creds)
    integration.credential_hints = integration_setup.hints(integration.erp, creds)
    audit("credentials.set", f"{integration.erp}: OAuth authorization by {current_user.email}", clinic.id)
    db.session.commit()
    flash(gettext("%(erp)s connected.", erp=connector_class(integration.erp).label), "success")
    return redirect(url_for("integrations.setup", clinic_id=clinic.id, erp=integration.erp))
