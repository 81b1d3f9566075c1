"""The RQ entry points. Jobs carry a run id only; everything else is read from the database."""
from __future__ import annotations

import logging
import random
import time

from flask import current_app, has_app_context

from integrations.base import AuthError, Connector, ConnectorError, RateLimitedError, TransientError
from integrations.http import RedisSemaphore

from ..extensions import db
from ..models import Integration, Notification, SyncRecord, SyncRun
from ..queues import redis_connection
from . import outbox, runs
from .connectors import build_connector, http_client
from .pull import pull_all
from .verify import verify_chunk
from .customer_step import push_customer_chunk
from .push import push_invoice

log = logging.getLogger(__name__)
PAUSE_AFTER_FAILURES = 5
_app = None
_renew_slot = None


def use_app(app) -> None:
    """The app jobs run in when no app context is active (the worker's own)."""
    global _app
    _app = app


def _with_app(fn, *args):
    global _app
    if has_app_context():
        return fn(*args)
    if _app is None:
        from .. import create_app
        _app = create_app(PG_PREPARE_THRESHOLD=None)  # as worker.py: see Config
    with _app.app_context():
        try:
            return fn(*args)
        finally:
            db.session.remove()


def execute_run(run_id: int) -> str:
    return _with_app(_execute_run, run_id)


def tick() -> dict:
    """Periodic work any worker may do (guarded by a Redis lock): dispatch, sweep, scheduled pulls."""
    return _with_app(_tick)


def recheck_health(clinic_id: int) -> int:
    """Recheck every customer of a clinic (its ERP's own rules apply from now on)."""
    return _with_app(_recheck_health, clinic_id)


def _recheck_health(clinic_id: int) -> int:
    from ..record_health import recheck_clinic
    from ..views import active_integration
    return recheck_clinic(clinic_id, active_integration(clinic_id))


def _tick() -> dict:
    from .schedule import schedule_pulls
    pulls = schedule_pulls()
    return {"pulls": pulls, "dispatched": outbox.dispatch(), "swept": outbox.sweep()}


def _execute_run(run_id: int) -> str:
    run = db.session.get(SyncRun, run_id)
    if run is None:
        return "missing"
    if run.finished:
        return run.status
    integration = db.session.get(Integration, run.integration_id)
    if integration is None or not integration.enabled:
        runs.finish(run, error="The integration is disabled")
        db.session.commit()
        return run.status
    if integration.paused:
        runs.finish(run, error=f"The integration is paused: {integration.paused_reason}")
        db.session.commit()
        return run.status
    # One clinic's runs hold at most JOBS_PER_INTEGRATION workers at once (fairness). The slots are
    # leases in Redis: a worker killed while holding one gives it back when the lease ends.
    # (RQ's own per-key job limit was tried first: a worker killed mid-job kept its slot for good.)
    # The lease is short and renewed after every step, so a dead holder frees its slot quickly.
    slots = RedisSemaphore(redis_connection(), prefix="tecpet:jobs",
                           lease_seconds=current_app.config["STALE_RUN_SECONDS"])
    key = f"integration:{integration.id}"
    token = slots.try_take(key, current_app.config["JOBS_PER_INTEGRATION"])
    if token is None:
        outbox.enqueue_run(run, delay=1 + random.uniform(0, 2))
        return "waiting for a free slot of this integration"
    global _renew_slot
    _renew_slot = lambda: slots.renew(key, token)  # noqa: E731 - called by _show_trouble after each step
    try:
        return _run_slice(run_id, run, integration)
    finally:
        _renew_slot = None
        slots.give_back(key, token)


def _run_slice(run_id: int, run: SyncRun, integration: Integration) -> str:
    runs.start(run)
    db.session.commit()
    deadline = time.monotonic() + current_app.config["JOB_SLICE_SECONDS"]
    trouble: list[str] = []
    client = http_client()
    client.listeners.append(trouble.append)
    try:
        return _work(run_id, run, integration, deadline, trouble)
    finally:
        client.listeners.remove(trouble.append)


def _show_trouble(run: SyncRun, trouble: list[str]) -> None:
    """After every step: keep this job's slot, and show the ERP failures retried within the step
    on the run page while they last."""
    if _renew_slot is not None:
        _renew_slot()
    if trouble:
        run.error = f"The ERP is having trouble; retrying ({len(trouble)}x, last: {trouble[-1]})"
        trouble.clear()
        db.session.commit()


def _work(run_id: int, run: SyncRun, integration: Integration, deadline: float, trouble: list[str]) -> str:
    steps = 0  # committed steps of this slice: progress, whatever happens next
    try:
        connector = build_connector(integration)
        if run.entity == "verify":
            while ids := runs.pending_ids(run, 10):
                if time.monotonic() > deadline:
                    return _continue_later(run)
                verify_chunk(run, integration, connector, ids)
                steps += 1
                _show_trouble(run, trouble)
        elif run.direction == "pull":
            pull_all(run, integration, connector)
        elif run.entity == "customer":
            while ids := runs.pending_ids(run, chunk_size(connector)):
                if time.monotonic() > deadline:
                    return _continue_later(run)
                push_customer_chunk(run, integration, connector, ids)
                steps += 1
                _show_trouble(run, trouble)
        else:
            while ids := runs.pending_ids(run, 1):
                if time.monotonic() > deadline:
                    return _continue_later(run)
                push_invoice(run, integration, connector, db.session.get(SyncRecord, ids[0]))
                steps += 1
                _show_trouble(run, trouble)
    except (RateLimitedError, TransientError) as exc:
        db.session.rollback()
        return _postpone(run_id, exc, progressed=steps > 0)
    except AuthError as exc:
        db.session.rollback()
        return _fail(run_id, f"The ERP refused the credentials: {exc.plain()}. Support must update them.")
    except ConnectorError as exc:
        db.session.rollback()
        return _fail(run_id, exc.plain())
    run = db.session.get(SyncRun, run_id)
    runs.finish(run)
    integration.consecutive_failures = 0
    db.session.commit()
    return run.status


def _continue_later(run: SyncRun) -> str:
    """A bounded slice is done: go to the back of the queue so other clinics' work interleaves."""
    run.status = "queued"
    db.session.commit()
    outbox.enqueue_run(run)
    return "continued"


STEP_SECONDS = 5.0  # a per-record step commits its progress about this often at the ERP's own pace
STEP_RECORDS = (10, 200)


def chunk_size(connector) -> int:
    """Records per committed step: the ERP's batch when it has batch calls; otherwise what the
    account's rate limit lets through in about STEP_SECONDS, between 10 and 200 records and at
    most the connector's batch_size (VHSYS, bound by 10,000 an hour: 13), so the progress bar moves
    every few seconds at any pace and a fast account does not pay a step's fixed database work
    every few records."""
    cls = type(connector)
    if cls.upsert_customers is not Connector.upsert_customers:
        return max(1, cls.batch_size)
    per_second = min((count / seconds for count, seconds in connector.limit.windows), default=10.0)
    low, high = STEP_RECORDS
    return max(1, min(cls.batch_size, max(low, min(high, int(per_second * STEP_SECONDS)))))


def _postpone(run_id: int, exc: ConnectorError, progressed: bool = False) -> str:
    """The ERP is busy or unreachable: keep the remaining records pending and try again later.

    Failures "in a row" are slices that moved nothing: a slice that committed a step before the
    ERP failed starts the count again, and the backoff with it. An ERP asking us to slow down
    (429, or our share of its limit used up) is waited for, never counted towards pausing the
    integration: it is not broken, and support could do nothing about it."""
    run = db.session.get(SyncRun, run_id)
    integration = db.session.get(Integration, run.integration_id)
    run.status = "queued"
    run.error = f"Waiting to retry: {exc.plain()}"
    if progressed:
        integration.consecutive_failures = 0
    run.attempts = 1 if progressed else (run.attempts or 0) + 1
    if not isinstance(exc, RateLimitedError):
        _count_failure(integration, exc.plain())
    db.session.commit()
    # exponential backoff with full jitter; the ERP's own Retry-After when it gave one
    backoff = min(300.0, 5.0 * 2 ** min(run.attempts, 6))
    delay = max(getattr(exc, "retry_after", 0) or 0, random.uniform(backoff / 2, backoff))
    if not integration.paused:
        outbox.enqueue_run(run, delay=delay)
    else:
        runs.finish(run, error=run.error)
        db.session.commit()
    return "postponed"


def _fail(run_id: int, message: str) -> str:
    run = db.session.get(SyncRun, run_id)
    integration = db.session.get(Integration, run.integration_id)
    runs.finish(run, error=message)
    _count_failure(integration, message)
    db.session.commit()
    return run.status


def _count_failure(integration: Integration, message: str) -> None:
    integration.consecutive_failures = (integration.consecutive_failures or 0) + 1
    if integration.consecutive_failures >= PAUSE_AFTER_FAILURES and not integration.paused:
        integration.paused_reason = (f"Paused after {integration.consecutive_failures} failures in a row. "
                                     f"Last error: {message}")
        db.session.add(Notification(clinic_id=integration.clinic_id, audience="support",
                                    message=f"{integration.erp} integration of clinic {integration.clinic_id} "
                                            f"paused: {message}"))
        log.warning("integration %s paused after repeated failures", integration.id)
