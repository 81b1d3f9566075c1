"""Retry failed records: one record, or every failed record of a run, as a new run."""
from __future__ import annotations

from sqlalchemy import select

from ..extensions import db
from ..models import Integration, SyncRecord, SyncRun
from . import outbox, runs


class NothingToRetry(Exception):
    pass


def retry_failed(run: SyncRun, record_id: int | None = None) -> SyncRun:
    q = select(SyncRecord).where(SyncRecord.run_id == run.id, SyncRecord.outcome == "failed")
    if record_id:
        q = q.where(SyncRecord.id == record_id)
    failed = list(db.session.scalars(q.order_by(SyncRecord.id)))
    if not failed or run.direction != "push":
        raise NothingToRetry("There is no failed record to retry in this run.")
    integration = db.session.get(Integration, run.integration_id)
    new = runs.plan_run(integration, direction="push", entity=run.entity, trigger="retry",
                        items=[(r.local_id, r.label) for r in failed if r.local_id is not None])
    db.session.commit()
    outbox.enqueue_run(new)
    return new
