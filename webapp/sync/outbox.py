"""Transactional outbox: a change and its outbox row commit together; the dispatcher turns
pending rows into planned sync runs and enqueues one RQ job per run (ids only); the sweeper
re-enqueues runs whose job never reached Redis or whose worker died."""
from __future__ import annotations

import logging
from datetime import timedelta

from flask import current_app
from redis.exceptions import RedisError
from rq import Retry
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from sqlalchemy import select

from integrations.base import Feature

from ..extensions import db
from ..models import Binding, Customer, Integration, Invoice, OutboxEvent, SyncRun, utcnow
from ..queues import queue, queue_for, redis_connection
from . import runs
from .connectors import feature_on

log = logging.getLogger(__name__)

TOPIC_FEATURE = {
    "customer.upserted": (Feature.SYNC_CUSTOMERS,),
    "sync.initial": (Feature.SYNC_CUSTOMERS,),
    "invoice.billed": (Feature.GENERATE_FINANCIAL, Feature.ISSUE_INVOICE),
    "pull.requested": (Feature.PULL_BACK,),
    "verify.requested": (Feature.SYNC_CUSTOMERS,),
}


def record(clinic_id: int, topic: str, subject_id: int | None = None, *, integration_id: int | None = None,
           trigger: str = "event") -> OutboxEvent:
    """Add an outbox row to the current transaction (the caller commits it with the change)."""
    event = OutboxEvent(clinic_id=clinic_id, topic=topic, subject_id=subject_id,
                        integration_id=integration_id, trigger=trigger)
    db.session.add(event)
    return event


def _active_integrations(clinic_id: int, integration_id: int | None) -> list[Integration]:
    q = select(Integration).where(Integration.clinic_id == clinic_id, Integration.enabled.is_(True))
    if integration_id:
        q = q.where(Integration.id == integration_id)
    return [i for i in db.session.scalars(q) if not i.paused]


def _items(topic: str, clinic_id: int, integration_id: int,
           subject_ids: list[int]) -> tuple[str, list[tuple[int, str]]]:
    if topic == "sync.initial":
        rows = db.session.execute(select(Customer.id, Customer.name).where(Customer.clinic_id == clinic_id)
                                  .order_by(Customer.id)).all()
        return "customer", [(r.id, r.name) for r in rows]
    if topic == "customer.upserted":
        rows = db.session.execute(select(Customer.id, Customer.name).where(
            Customer.clinic_id == clinic_id, Customer.id.in_(subject_ids))).all()
        return "customer", [(r.id, r.name) for r in rows]
    if topic == "verify.requested":
        q = (select(Customer.id, Customer.name).join(Binding, (Binding.local_id == Customer.id)
                                                     & (Binding.integration_id == integration_id)
                                                     & (Binding.entity == "customer") & (Binding.state == "bound"))
             .where(Customer.clinic_id == clinic_id))
        if subject_ids:
            q = q.where(Customer.id.in_(subject_ids))
        return "verify", [(r.id, r.name) for r in db.session.execute(q.order_by(Customer.id)).all()]
    if topic == "invoice.billed":
        rows = db.session.execute(select(Invoice.id, Invoice.number).where(
            Invoice.clinic_id == clinic_id, Invoice.id.in_(subject_ids))).all()
        return "invoice", [(r.id, f"Invoice {r.number}") for r in rows]
    return "all", []


def dispatch(limit: int = 5000) -> list[int]:
    """Turn pending outbox rows into runs (one per integration, topic and trigger); enqueue them."""
    q = (select(OutboxEvent).where(OutboxEvent.processed_at.is_(None)).order_by(OutboxEvent.id).limit(limit))
    if db.engine.dialect.name == "postgresql":
        q = q.with_for_update(skip_locked=True)
    events = list(db.session.scalars(q))
    if not events:
        db.session.rollback()
        return []
    groups: dict[tuple, list[OutboxEvent]] = {}
    for ev in events:
        groups.setdefault((ev.clinic_id, ev.topic, ev.trigger, ev.integration_id), []).append(ev)
    planned: list[SyncRun] = []
    now = utcnow()
    for (clinic_id, topic, trigger, integration_id), evs in groups.items():
        subject_ids = sorted({e.subject_id for e in evs if e.subject_id is not None})
        for integration in _active_integrations(clinic_id, integration_id):
            if not any(feature_on(integration, f) for f in TOPIC_FEATURE.get(topic, ())):
                continue
            entity, items = _items(topic, clinic_id, integration.id, subject_ids)
            if topic == "invoice.billed":
                for inv in db.session.scalars(select(Invoice).where(Invoice.id.in_(subject_ids))):
                    if inv.status in ("billed", "blocked"):
                        inv.status, inv.status_reason = "queued", ""
            direction = "pull" if topic in ("pull.requested", "verify.requested") else "push"
            if entity != "all" and not items:
                continue
            run = runs.plan_run(integration, direction=direction, entity=entity, trigger=trigger, items=items)
            planned.append(run)
        for ev in evs:
            ev.processed_at = now
            ev.run_id = planned[-1].id if planned else None
    db.session.commit()
    for run in planned:
        enqueue_run(run)
    return [r.id for r in planned]




def enqueue_run(run: SyncRun, delay: float | None = None) -> bool:
    """Put the run's job on its queue (ids only). A Redis failure leaves it for the sweeper.

    A delayed run is not handed to Redis at all: its time is written on the run and the sweeper
    enqueues it when due, so a postponement survives any worker or Redis restart."""
    if delay:
        run.retry_at = utcnow() + timedelta(seconds=delay)
        run.job_id, run.enqueued_at = "", None
        db.session.commit()
        return True
    job_id = f"run-{run.id}-{(run.enqueues or 0) + 1}"
    try:
        q = queue(queue_for(run))
        # a slice lasts JOB_SLICE_SECONDS, so a job still running after 15 minutes is stuck: RQ kills it
        kwargs = dict(job_id=job_id, job_timeout=900, result_ttl=600, failure_ttl=7 * 86400,
                      retry=Retry(max=3), description=f"{run.direction} {run.entity} run {run.id}")
        q.enqueue("webapp.sync.jobs.execute_run", run.id, **kwargs)
    except RedisError as exc:
        log.warning("run %s not enqueued (%s); the sweeper will retry", run.id, type(exc).__name__)
        return False
    run.enqueues = (run.enqueues or 0) + 1
    run.job_id = job_id
    run.enqueued_at = utcnow()
    run.retry_at = None
    db.session.commit()
    return True


def _job_alive(run: SyncRun, stale_after: timedelta, now) -> bool:
    """Is the run's job still coming? Waiting in Redis: yes. "Started" on a queued run: only while
    the run's heartbeat is fresh (a worker killed mid-job leaves its job "started" for good)."""
    if not run.job_id:
        return False
    try:
        job = Job.fetch(run.job_id, connection=redis_connection())
    except NoSuchJobError:
        return False
    status = job.get_status(refresh=False)
    if status in (JobStatus.QUEUED, JobStatus.DEFERRED, JobStatus.SCHEDULED):
        return True
    if status == JobStatus.STARTED:
        last = run.heartbeat_at or run.enqueued_at
        return bool(last and now - last < stale_after)
    return False


def sweep() -> list[int]:
    """Re-enqueue queued runs whose job is not in Redis, and resume runs whose worker died."""
    now = utcnow()
    stale_after = timedelta(seconds=current_app.config["STALE_RUN_SECONDS"])
    unsent_grace = timedelta(seconds=current_app.config["UNSENT_GRACE_SECONDS"])
    requeued = []
    queued = db.session.scalars(select(SyncRun).where(SyncRun.status == "queued").order_by(SyncRun.id).limit(500))
    for run in list(queued):
        if run.retry_at and run.retry_at > now:
            continue  # postponed: not due yet
        if run.enqueued_at and now - run.enqueued_at < unsent_grace:
            continue
        try:
            alive = _job_alive(run, stale_after, now)
        except RedisError:
            return requeued
        if not alive:
            if enqueue_run(run):
                requeued.append(run.id)
    stale = db.session.scalars(select(SyncRun).where(SyncRun.status == "running",
                                                     SyncRun.heartbeat_at < now - stale_after).limit(200))
    for run in list(stale):
        log.warning("run %s abandoned (last heartbeat %s): resuming", run.id, run.heartbeat_at)
        run.status = "queued"
        run.attempts = (run.attempts or 0) + 1
        db.session.commit()
        if enqueue_run(run):
            requeued.append(run.id)
    db.session.commit()
    return requeued


def request_pull(integration: Integration, trigger: str) -> None:
    record(integration.clinic_id, "pull.requested", integration_id=integration.id, trigger=trigger)
