"""Support's integration setup: the form is generated from the connector's declarations,
credentials are merged (a blank secret keeps the stored one), encrypted, and never echoed."""
from __future__ import annotations

from urllib.parse import urlparse

from flask import current_app
from flask_wtf import FlaskForm
from redis.exceptions import RedisError
from sqlalchemy import select
from wtforms import BooleanField, PasswordField, StringField
from wtforms.validators import Optional, Length

from integrations.base import FEATURE_LABELS, ConnectorError, Feature
from integrations.registry import connector_class, sandbox_demo_credentials, sandbox_demo_settings

from . import credentials
from .access import audit
from .extensions import db
from .models import Clinic, Integration
from .queues import queue
from .sync import outbox
from .sync.connectors import build_connector, probe_http_client

KEEP_HINT = "Leave blank to keep the stored value"
# ERP-generated keys, ids, tokens and secrets (they travel in HTTP headers); a user name or company
# name (Zanthus) may hold accents and spaces
TOKEN_SUFFIXES = ("_token", "_secret", "_key", "_id")


def setup_form(erp: str, integration: Integration | None, formdata=None):
    """A FlaskForm class built for this ERP: credentials, settings, features."""
    cls = connector_class(erp)

    class SetupForm(FlaskForm):
        pass

    stored = bool(integration and integration.credentials_encrypted)
    for f in cls.credential_fields:
        field_cls = PasswordField if f.secret else StringField
        desc = f.help + (f" {KEEP_HINT}." if stored and f.secret else "")
        setattr(SetupForm, f"cred_{f.name}", field_cls(f.label, validators=[Optional(), Length(max=4000)],
                                                       description=desc.strip()))
    for s in cls.setting_fields:
        setattr(SetupForm, f"set_{s.name}", StringField(s.label, validators=[Optional(), Length(max=500)],
                                                         description=s.help, default=s.default))
    for feature in Feature:
        if cls.offers(feature):
            setattr(SetupForm, f"feat_{feature.value}", BooleanField(FEATURE_LABELS[feature]))
    form = SetupForm(formdata=formdata)
    if formdata is None:
        current = set(integration.features or []) if integration else (
            set() if cls.contract_pending else {f.value for f in Feature if cls.offers(f)})
        for feature in Feature:
            if cls.offers(feature):
                getattr(form, f"feat_{feature.value}").data = feature.value in current
        defaults = demo_settings(erp)
        for s in cls.setting_fields:
            value = (integration.settings or {}).get(s.name) if integration else None
            getattr(form, f"set_{s.name}").data = value if value is not None else defaults.get(s.name, s.default)
        for f in cls.credential_fields:
            if not f.secret and integration and integration.credential_hints.get(f.name):
                getattr(form, f"cred_{f.name}").data = ""
    return form


def demo_settings(erp: str) -> dict[str, str]:
    """In demo mode the ERP's sandbox stands in for the ERP."""
    url = current_app.config.get("SANDBOX_URLS", {}).get(erp) if current_app.config.get("DEMO") else None
    return sandbox_demo_settings(erp, url) if url else {}


def demo_credentials(erp: str) -> dict[str, str]:
    """The sandbox's own demo credentials (not secrets: they open only a local fake)."""
    return sandbox_demo_credentials(erp) if demo_settings(erp) else {}


def read_form(erp: str, form, integration: Integration | None) -> tuple[dict, dict, list[str], list[str]]:
    """(credentials merged with the stored ones, settings, features, errors)."""
    cls = connector_class(erp)
    stored = credentials.decrypt(integration.credentials_encrypted) if integration and integration.credentials_encrypted else {}
    creds, errors = dict(stored), []
    for f in cls.credential_fields:
        value = (getattr(form, f"cred_{f.name}").data or "").strip()
        if value and f.name.endswith(TOKEN_SUFFIXES) and not _printable_ascii(value):
            errors.append(f"{f.label} may hold only the letters, digits and symbols the ERP generated "
                          "(no accents, spaces inside or line breaks): copy it again from the ERP.")
        elif value:
            creds[f.name] = value
        elif f.required and not creds.get(f.name) and cls.auth_kind != "oauth2":
            errors.append(f"{f.label} is required.")
    settings = {s.name: (getattr(form, f"set_{s.name}").data or "").strip() for s in cls.setting_fields}
    for s in cls.setting_fields:
        value = settings[s.name]
        if s.name.endswith("url") and value and not _is_http_url(value):
            errors.append(f"{s.label} must be an http:// or https:// address.")
    features = [f.value for f in Feature if cls.offers(f) and getattr(form, f"feat_{f.value}").data]
    return creds, settings, features, errors


def _printable_ascii(value: str) -> bool:
    """ERP keys, tokens and secrets travel in HTTP headers: visible ASCII only."""
    return all("!" <= ch <= "~" for ch in value)


def _is_http_url(value: str) -> bool:
    parsed = urlparse(value)
    return parsed.scheme in ("http", "https") and bool(parsed.hostname)


def test_connection(erp: str, creds: dict, settings: dict, integration: Integration | None) -> tuple[bool, str]:
    probe = integration or Integration(id=0, erp=erp, clinic_id=0)
    try:
        connector = build_connector(probe, creds=creds, settings=settings, http=probe_http_client())
        return True, connector.test_connection()
    except ConnectorError as exc:
        return False, exc.plain()


def hints(erp: str, creds: dict) -> dict[str, str]:
    cls = connector_class(erp)
    out = {}
    for f in cls.credential_fields:
        value = creds.get(f.name, "")
        out[f.name] = credentials.mask(value) if f.secret else value
    return out


def save(clinic: Clinic, erp: str, creds: dict, settings: dict, features: list[str], enable: bool) -> Integration:
    """Create or update the clinic's integration; queue the initial customer sync when enabled."""
    integration = db.session.scalar(select(Integration).where(Integration.clinic_id == clinic.id, Integration.erp == erp))
    created = integration is None
    was_enabled = bool(integration and integration.enabled)
    old_hints = dict(integration.credential_hints or {}) if integration else {}
    if created:
        integration = Integration(clinic_id=clinic.id, erp=erp)
        db.session.add(integration)
    # one active ERP per clinic: enabling this one disables the others
    if enable:
        for other in db.session.scalars(select(Integration).where(Integration.clinic_id == clinic.id,
                                                                  Integration.erp != erp, Integration.enabled.is_(True))):
            other.enabled = False
            audit("integration.disabled", f"{other.erp} (another ERP was enabled)", clinic.id)
    integration.credentials_encrypted = credentials.encrypt(creds) if creds else ""
    integration.credential_hints = hints(erp, creds)
    integration.settings = settings
    integration.features = features
    integration.enabled = enable
    if enable:
        integration.paused_reason = ""
        integration.consecutive_failures = 0
    db.session.flush()
    if integration.credential_hints != old_hints:
        changed = sorted(k for k in integration.credential_hints if integration.credential_hints.get(k) != old_hints.get(k))
        audit("credentials.set", f"{erp}: {', '.join(changed) or 'updated'}", clinic.id)
    audit("integration.saved", f"{erp}: {'enabled' if enable else 'disabled'}; features: {', '.join(features) or 'none'}",
          clinic.id)
    if enable and not was_enabled and Feature.SYNC_CUSTOMERS.value in features:
        outbox.record(clinic.id, "sync.initial", integration_id=integration.id, trigger="initial")
    db.session.commit()
    try:
        queue("events").enqueue("webapp.sync.jobs.recheck_health", clinic.id, job_timeout=1800)
    except RedisError:
        pass  # the rules of the previous ERP stay until the next change of each record
    if enable:
        outbox.dispatch()
    return integration
