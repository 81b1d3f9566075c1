"""Failed records are listed with the ERP's reason and retried from the run page; repeated
failures pause the integration and notify support."""
from __future__ import annotations

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
