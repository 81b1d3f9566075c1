"""ERP webhooks: a delivery signed as the ERP signs it queues a pull; a forged one is refused."""
from __future__ import annotations

import requests
from sqlalchemy import select

from webapp.models import Integration, OutboxEvent, SyncRun

from .helpers import VALID_CUSTOMERS, customer_event, post_events
from .test_connectors_e2e import approve_oauth


def test_bling_webhook_is_verified_and_queues_a_pull(world, web, api, work, serve_sandbox, db_session):
    from integrations.bling.sandbox import DEMO_CREDENTIALS, Sandbox
    server = serve_sandbox(Sandbox())
    cid = world["clinic_a"].id
    support = web("support@test")
    form = {"erp": "bling", "cred_client_id": DEMO_CREDENTIALS["client_id"],
            "cred_client_secret": DEMO_CREDENTIALS["client_secret"], "set_base_url": server.url,
            "feat_sync_customers": "y", "feat_pull_back": "y"}
    support.post(f"/c/{cid}/integration/setup?erp=bling", {**form, "action": "save_disabled"})
    approve_oauth(support, cid, "bling")
    support.post(f"/c/{cid}/integration/setup?erp=bling", {**form, "action": "save_enabled"})
    post_events(api, world["token_a"], customer_event(VALID_CUSTOMERS[0]))
    work()
    deliveries = requests.get(f"{server.url}/__sandbox__/webhooks", timeout=5).json()
    assert deliveries, "creating a contact in Bling emits a webhook"
    integration = db_session.scalar(select(Integration))
    url = f"/webhooks/bling/{integration.id}"
    forged = api.post(url, data=deliveries[0]["body"].replace("}", " }", 1),
                      headers=deliveries[0]["headers"])
    assert forged.status_code == 401
    assert db_session.scalar(select(OutboxEvent).where(OutboxEvent.trigger == "webhook")) is None
    ok = api.post(url, data=deliveries[0]["body"].encode(), headers=deliveries[0]["headers"])
    assert ok.status_code == 202 and ok.json["accepted"] >= 1
    pull = db_session.scalar(select(SyncRun).where(SyncRun.trigger == "webhook"))
    assert pull is not None and pull.direction == "pull"
    work()
    db_session.refresh(pull)
    assert pull.status == "succeeded", pull.error
    assert api.post(f"/webhooks/vhsys/{integration.id}", data=b"{}").status_code == 404
