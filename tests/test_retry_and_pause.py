"""Failed records are listed with the ERP's reason and retried from the run page; repeated
failures pause the integration and notify support."""
from __future__ import annotations

import pytest
import requests
from sqlalchemy import select

from webapp.models import AuditLog, Integration, Notification, SyncRecord, SyncRun

from .helpers import VALID_CUSTOMERS, customer_event, post_events
from .test_walking_skeleton import sandbox_state, setup_vhsys


def faults(sandbox, **kw):
    requests.post(f"{sandbox.url}/__sandbox__/faults", json=kw, timeout=5).raise_for_status()


def test_failed_records_are_retried_from_the_run_page(world, web, api, work, vhsys_sandbox, db_session):
    cid = world["clinic_a"].id
    post_events(api, world["token_a"], *[customer_event(c) for c in VALID_CUSTOMERS])
    faults(vhsys_sandbox, reject_rate=1.0, seed=1)
    setup_vhsys(web("support@test"), cid, vhsys_sandbox, features=("sync_customers",))
    work()
    run = db_session.scalar(select(SyncRun))
    assert (run.status, run.failed) == ("partial", 3)
    owner = web("owner-a@test")
    page = owner.get(f"/c/{cid}/runs/{run.id}").get_data(as_text=True)
    assert "recusado pela validação do VHSYS" in page and "Retry the 3 failed record(s)" in page
    assert sandbox_state(vhsys_sandbox)["clientes"] == []

    faults(vhsys_sandbox, reject_rate=0.0)
    one = db_session.scalar(select(SyncRecord).where(SyncRecord.run_id == run.id).order_by(SyncRecord.id))
    assert owner.post(f"/c/{cid}/runs/{run.id}/retry", {"record_id": one.id}).status_code == 302
    work()
    assert len(sandbox_state(vhsys_sandbox)["clientes"]) == 1
    owner.post(f"/c/{cid}/runs/{run.id}/retry")
    work()
    retry_runs = db_session.scalars(select(SyncRun).where(SyncRun.trigger == "retry").order_by(SyncRun.id)).all()
    assert [(r.total, r.status) for r in retry_runs] == [(1, "succeeded"), (3, "succeeded")]
    assert retry_runs[1].unchanged == 1 and retry_runs[1].created == 2
    assert len(sandbox_state(vhsys_sandbox)["clientes"]) == 3
    assert db_session.scalar(select(AuditLog).where(AuditLog.action == "run.retried")) is not None
    # another clinic's owner cannot retry clinic A's runs
    assert web("owner-b@test").post(f"/c/{cid}/runs/{run.id}/retry").status_code == 403


def test_repeated_auth_failures_pause_the_integration(world, web, api, work, vhsys_sandbox, db_session):
    cid = world["clinic_a"].id
    setup_vhsys(web("support@test"), cid, vhsys_sandbox, features=("sync_customers",))
    faults(vhsys_sandbox, expire_tokens=True)
    for n in range(5):
        post_events(api, world["token_a"], customer_event(dict(VALID_CUSTOMERS[0], number=str(100 + n))))
        work()
    integration = db_session.scalar(select(Integration))
    assert integration.paused and "credentials" in integration.paused_reason
    assert db_session.scalar(select(Notification)) is not None
    support = web("support@test")
    assert "paused" in support.get("/support/clinics").get_data(as_text=True)
    owner_page = web("owner-a@test").get(f"/c/{cid}/").get_data(as_text=True)
    assert "paused" in owner_page
    # a paused integration takes no new work until support resumes it
    before = len(db_session.scalars(select(SyncRun)).all())
    post_events(api, world["token_a"], customer_event(VALID_CUSTOMERS[1]))
    assert len(db_session.scalars(select(SyncRun)).all()) == before


@pytest.fixture
def no_http_retries(monkeypatch):
    """The sync's HTTP client retries a refused request at once (its waits add up to seconds): each
    slice meets the ERP's answer without waiting."""
    from integrations.http import HttpClient
    monkeypatch.setattr(HttpClient, "backoff_delay", lambda self, attempt, retry_after=None: 0.0)


def _retry_now(app, db_session, run):
    """The postponed run's time has come: the sweeper hands it to a worker."""
    from webapp.sync import outbox
    db_session.refresh(run)
    assert run.status == "queued" and run.retry_at is not None
    run.retry_at = run.retry_at.replace(year=2000)
    db_session.commit()
    with app.app_context():
        assert run.id in outbox.sweep()


def test_an_erp_asking_to_slow_down_never_pauses_the_integration(app, world, web, api, work, vhsys_sandbox,
                                                                db_session, no_http_retries):
    """429s are waited for with backoff, however many in a row, and the run finishes once they stop;
    5xx in a row still pause it (test below)."""
    cid = world["clinic_a"].id
    setup_vhsys(web("support@test"), cid, vhsys_sandbox, features=("sync_customers",))
    faults(vhsys_sandbox, throttle_rate=1.0, seed=2)
    post_events(api, world["token_a"], customer_event(VALID_CUSTOMERS[0]))
    work()
    run = db_session.scalar(select(SyncRun))
    for _ in range(6):  # six slices in a row refused: more than PAUSE_AFTER_FAILURES
        _retry_now(app, db_session, run)
        work()
    db_session.refresh(run)
    integration = db_session.scalar(select(Integration))
    assert not integration.paused and integration.consecutive_failures == 0
    assert run.status == "queued" and run.error.startswith("Waiting to retry: The ERP asked us to slow down")
    assert run.attempts >= 6  # the backoff grows while nothing moves
    faults(vhsys_sandbox, throttle_rate=0.0)
    _retry_now(app, db_session, run)
    work()
    db_session.refresh(run)
    assert (run.status, run.created) == ("succeeded", 1)


def test_failures_in_a_row_count_only_slices_that_moved_nothing(app, world, web, api, work, vhsys_sandbox, db_session,
                                                                 no_http_retries):
    """A slice that committed steps before the ERP failed starts the count and the backoff again;
    five slices in a row that moved nothing pause the integration."""
    from webapp.sync import jobs
    cid = world["clinic_a"].id
    setup_vhsys(web("support@test"), cid, vhsys_sandbox, features=("sync_customers",))
    faults(vhsys_sandbox, error_rate=1.0, seed=3)
    post_events(api, world["token_a"], *[customer_event(c) for c in VALID_CUSTOMERS])
    work()
    run = db_session.scalar(select(SyncRun))
    integration = db_session.scalar(select(Integration))
    for _ in range(3):
        _retry_now(app, db_session, run)
        work()
    db_session.refresh(integration)
    db_session.refresh(run)
    assert (integration.consecutive_failures, run.attempts) == (4, 4)

    with app.app_context():  # a slice that pushed a step, then met a 5xx
        assert jobs._postpone(run.id, jobs.TransientError("VHSYS had an internal error"), progressed=True) == "postponed"
    db_session.refresh(integration)
    db_session.refresh(run)
    assert (integration.consecutive_failures, run.attempts) == (1, 1) and not integration.paused

    for _ in range(4):  # then five in a row that moved nothing
        _retry_now(app, db_session, run)
        work()
    db_session.refresh(integration)
    assert integration.paused and "Paused after 5 failures in a row" in integration.paused_reason
