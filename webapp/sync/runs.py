"""Sync runs: planned with one pending record per item, advanced in chunks, finished with a verdict."""
from __future__ import annotations

from sqlalchemy import func, insert, select

from ..extensions import db
from ..models import Integration, SyncRecord, SyncRun, utcnow

FINAL_OUTCOMES = ("created", "updated", "unchanged", "skipped", "failed")


def plan_run(integration: Integration, *, direction: str, entity: str, trigger: str,
             items: list[tuple[int, str]] = ()) -> SyncRun:
    """Create a queued run and its pending records [(local_id, label)] (caller commits)."""
    run = SyncRun(clinic_id=integration.clinic_id, integration_id=integration.id, erp=integration.erp,
                  direction=direction, entity=entity, trigger=trigger, status="queued", total=len(items))
    db.session.add(run)
    db.session.flush()
    if items:
        db.session.execute(insert(SyncRecord), [
            {"run_id": run.id, "entity": entity, "local_id": local_id, "label": (label or "")[:255],
             "outcome": "pending", "message": "", "remote_id": "", "attempts": 0}
            for local_id, label in items
        ])
    return run


def start(run: SyncRun) -> None:
    now = utcnow()
    run.status = "running"
    run.started_at = run.started_at or now
    run.heartbeat_at = now


def set_outcome(run: SyncRun, rec: SyncRecord, outcome: str, message: str = "", remote_id: str = "") -> None:
    """Move a record to its outcome and keep the run's counters in step."""
    previous = rec.outcome
    if previous == outcome and previous != "pending":
        rec.message = message or rec.message
        return
    if previous in FINAL_OUTCOMES:
        setattr(run, previous, max(0, getattr(run, previous) - 1))
    else:
        run.done += 1
    rec.outcome = outcome
    rec.message = message
    rec.attempts = (rec.attempts or 0) + 1
    if remote_id:
        rec.remote_id = remote_id
    rec.finished_at = utcnow()
    setattr(run, outcome, getattr(run, outcome) + 1)
    run.heartbeat_at = utcnow()


def count_outcomes(run: SyncRun, counts: dict[str, int], now) -> None:
    """Pending records of the run moved to these outcomes ({outcome: how many}), written in bulk:
    the run's counters follow, as set_outcome moves them one by one."""
    for outcome, n in counts.items():
        setattr(run, outcome, getattr(run, outcome) + n)
    run.done += sum(counts.values())
    run.heartbeat_at = now


def add_record(run: SyncRun, entity: str, local_id: int | None, label: str, outcome: str,
               message: str = "", remote_id: str = "") -> SyncRecord:
    """For pulls: records are discovered, not planned."""
    rec = SyncRecord(run_id=run.id, entity=entity, local_id=local_id, label=(label or "")[:255],
                     outcome="pending", remote_id=remote_id or "")
    db.session.add(rec)
    run.total += 1
    set_outcome(run, rec, outcome, message, remote_id)
    return rec


def pending_ids(run: SyncRun, limit: int) -> list[int]:
    return list(db.session.scalars(
        select(SyncRecord.id).where(SyncRecord.run_id == run.id, SyncRecord.outcome == "pending")
        .order_by(SyncRecord.id).limit(limit)))


def recount(run: SyncRun) -> int:
    """Counters from the records themselves (two jobs of one run, after a crash, may both have
    advanced it); returns how many are still pending."""
    counts = dict(db.session.execute(select(SyncRecord.outcome, func.count()).where(SyncRecord.run_id == run.id)
                                     .group_by(SyncRecord.outcome)).all())
    for outcome in FINAL_OUTCOMES:
        setattr(run, outcome, counts.get(outcome, 0))
    run.total = sum(counts.values())
    run.done = run.total - counts.get("pending", 0)
    return counts.get("pending", 0)


def finish(run: SyncRun, error: str = "") -> None:
    if error:
        run.error = error
    remaining = recount(run)
    if error and (remaining or (run.total and run.failed == run.total)):
        run.status = "failed"
    elif run.failed or remaining:
        run.status = "partial"
    else:
        run.status = "succeeded"
        run.error = ""  # a wait that resolved itself is history, not a problem
    run.finished_at = utcnow()
    run.heartbeat_at = run.finished_at  # its commit drops the dashboard's figures (page_cache.install)
