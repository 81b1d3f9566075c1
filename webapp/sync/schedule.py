"""Periodic pulls: each enabled two-way integration is pulled every PULL_INTERVAL_SECONDS."""
from __future__ import annotations

from datetime import timedelta

from flask import current_app
from sqlalchemy import select

from integrations.base import Feature

from ..extensions import db
from ..models import Integration, SyncRun, utcnow
from . import outbox
from .connectors import feature_on


def schedule_pulls() -> list[int]:
    interval = timedelta(seconds=current_app.config["PULL_INTERVAL_SECONDS"])
    now = utcnow()
    due = []
    for integration in db.session.scalars(select(Integration).where(Integration.enabled.is_(True))):
        if integration.paused or not feature_on(integration, Feature.PULL_BACK):
            continue
        if integration.last_pull_at and now - integration.last_pull_at < interval:
            continue
        busy = db.session.scalar(select(SyncRun.id).where(SyncRun.integration_id == integration.id,
                                                          SyncRun.direction == "pull",
                                                          SyncRun.status.in_(("queued", "running"))).limit(1))
        if busy:
            continue
        outbox.request_pull(integration, trigger="schedule")
        integration.last_pull_at = now  # claims the slot; the run sets it again when done
        due.append(integration.id)
    db.session.commit()
    return due
