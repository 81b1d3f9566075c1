"""Build a connector for an integration: decrypt credentials, share one HTTP client per process."""
from __future__ import annotations

from flask import current_app
from sqlalchemy import select, update

from integrations.base import Connector, ConnectorContext, Feature
from integrations.http import HttpClient
from integrations.registry import connector_class

from .. import credentials
from ..extensions import db
from ..models import Integration
from ..queues import redis_connection


def http_client() -> HttpClient:
    """One HTTP client (and connection pool) per process, sharing the Redis rate limiter."""
    client = current_app.extensions.get("tecpet_http")
    if client is None:
        client = HttpClient(redis_connection(), timeout=current_app.config["HTTP_TIMEOUT_SECONDS"])
        current_app.extensions["tecpet_http"] = client
    return client


def probe_http_client() -> HttpClient:
    """For support's "Test connection": one retry, short waits, so a wrong address or token is
    answered in seconds (a sync's client retries longer: it has no one waiting on the page)."""
    client = current_app.extensions.get("tecpet_http_probe")
    if client is None:
        client = HttpClient(redis_connection(), timeout=min(10.0, current_app.config["HTTP_TIMEOUT_SECONDS"]),
                            retries=1, backoff=0.2, max_backoff=1.0)
        current_app.extensions["tecpet_http_probe"] = client
    return client


def account_key(integration: Integration) -> str:
    return f"{integration.erp}:{integration.id}"


def build_connector(integration: Integration, creds: dict | None = None,
                    settings: dict | None = None, http: HttpClient | None = None) -> Connector:
    cls = connector_class(integration.erp)
    integration_id = integration.id
    engine = db.engine  # bound here: a connector's threads have no application context

    def save_credentials(new_creds: dict[str, str]) -> None:
        # Written outside the job's transaction: a refreshed (rotated) token must survive a rollback.
        blob = credentials.encrypt(new_creds)
        with engine.begin() as conn:
            conn.execute(update(Integration).where(Integration.id == integration_id)
                         .values(credentials_encrypted=blob))

    def load_credentials() -> dict[str, str]:
        with engine.connect() as conn:
            blob = conn.execute(select(Integration.credentials_encrypted)
                                .where(Integration.id == integration_id)).scalar()
        return credentials.decrypt(blob) if blob else {}

    ctx = ConnectorContext(
        credentials=creds if creds is not None else credentials.decrypt(integration.credentials_encrypted),
        settings=dict(settings if settings is not None else (integration.settings or {})),
        http=http or http_client(),
        account_key=account_key(integration),
        save_credentials=save_credentials,
        load_credentials=load_credentials,
    )
    return cls(ctx)


def requirements_for(integration: Integration | None):
    if integration is None:
        return ()
    return connector_class(integration.erp).record_requirements


def feature_on(integration: Integration, feature: Feature) -> bool:
    return feature.value in (integration.features or []) and connector_class(integration.erp).offers(feature)
