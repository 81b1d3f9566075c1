"""An initial sync reads the ERP's customer list once: existing customers are linked (or updated),
new ones created without a search per record, and nothing is created twice."""
from __future__ import annotations

import requests
from sqlalchemy import select

from integrations import brazil
from integrations.vhsys.sandbox import DEMO_CREDENTIALS
from webapp.models import Binding, SyncRun

from .helpers import erp_call, VALID_CUSTOMERS, customer_event, post_events
from .test_walking_skeleton import sandbox_state, setup_vhsys

HEADERS = {"access-token": DEMO_CREDENTIALS["access_token"],
           "secret-access-token": DEMO_CREDENTIALS["secret_access_token"], "User-Agent": "test/1.0"}


def customer(i: int) -> dict:
    base = f"{200000000 + i * 7:09d}"
    return dict(VALID_CUSTOMERS[0], id=f"bulk-{i}", name=f"Cliente {i}", tax_id=base + brazil.cpf_check_digits(base))


def test_initial_sync_links_existing_erp_customers_and_creates_the_rest(world, web, api, work, serve_sandbox, db_session):
    from integrations.vhsys.sandbox import Sandbox
    server = serve_sandbox(Sandbox(rate_limit=[(100000, 1.0)]))
    customers = [customer(i) for i in range(60)]
    # the clinic already had 10 of them in VHSYS (one typed differently there)
    for i, c in enumerate(customers[:10]):
        body = {"razao_cliente": c["name"] if i else "CLIENTE ZERO", "tipo_pessoa": "PF",
                "cnpj_cliente": brazil.format_tax_id(c["tax_id"]), "endereco_cliente": c["street"],
                "numero_cliente": c["number"], "bairro_cliente": c["district"], "cep_cliente": c["zip_code"],
                "cidade_cliente": c["city"], "uf_cliente": c["state"], "email_cliente": c["email"],
                "celular_cliente": c["phone"]}
        assert erp_call("POST", f"{server.url}/clientes", json=body, headers=HEADERS).json()["status"] == "success"
    post_events(api, world["token_a"], *[customer_event(c) for c in customers])
    setup_vhsys(web("support@test"), world["clinic_a"].id, server, features=("sync_customers",))
    before = requests.get(f"{server.url}/__sandbox__/stats", timeout=5).json()["requests"]
    work()
    run = db_session.scalar(select(SyncRun).where(SyncRun.trigger == "initial"))
    assert run.status == "succeeded" and run.total == 60
    assert run.created == 50 and run.updated + run.unchanged == 10, (run.created, run.updated, run.unchanged)
    state = sandbox_state(server)
    assert len(state["clientes"]) == 60  # nobody twice
    assert any(c["razao_cliente"] == customers[0]["name"] for c in state["clientes"])  # the differing one updated
    requests_used = requests.get(f"{server.url}/__sandbox__/stats", timeout=5).json()["requests"] - before
    assert requests_used <= 50 + 1 + 1 + 5, requests_used  # creates + the update + a page or two of the list
    assert db_session.scalar(select(Binding).where(Binding.state != "bound")) is None


def test_a_run_cut_midway_releases_every_lock_and_resumes_without_duplicates(
        app, world, web, api, work, serve_sandbox, db_session, redis_client, monkeypatch):
    """Chunk 3's ERP call fails: the run is postponed with chunks 1-2 recorded, chunk 3 pending with
    its intents, no record lock left behind; the next attempt searches before creating, so VHSYS
    ends with every customer once."""
    from integrations.base import TransientError
    from integrations.vhsys import VhsysConnector
    from integrations.vhsys.sandbox import Sandbox
    from webapp.sync import outbox
    from .conftest import isolated
    server = serve_sandbox(Sandbox(rate_limit=[(100000, 1.0)]))
    customers = [customer(300 + i) for i in range(60)]
    monkeypatch.setattr("webapp.sync.jobs.chunk_size", lambda connector: 10)
    post_events(api, world["token_a"], *[customer_event(c) for c in customers])
    original, calls = VhsysConnector.upsert_customers, {"n": 0}

    def third_call_fails(self, batch):
        calls["n"] += 1
        if calls["n"] == 3:
            raise TransientError("VHSYS is briefly unavailable")
        return original(self, batch)

    monkeypatch.setattr(VhsysConnector, "upsert_customers", third_call_fails)
    setup_vhsys(web("support@test"), world["clinic_a"].id, server, features=("sync_customers",))
    work()
    run = db_session.scalar(select(SyncRun).where(SyncRun.trigger == "initial"))
    assert (run.status, run.done, run.created) == ("queued", 20, 20) and run.retry_at is not None
    assert "briefly unavailable" in run.error
    assert list(redis_client.scan_iter("tecpet:reclock:*")) == []
    pending = db_session.scalars(select(Binding).where(Binding.state == "pending")).all()
    assert len(pending) == 10  # chunk 3: intents recorded, the call failed
    assert len(sandbox_state(server)["clientes"]) == 20

    monkeypatch.undo()

    def due_now():
        with app.app_context():
            from webapp.extensions import db
            outbox.enqueue_run(db.session.get(SyncRun, run.id))

    isolated(due_now)
    work()
    db_session.expire_all()
    run = db_session.get(SyncRun, run.id)
    assert (run.status, run.total, run.created, run.failed) == ("succeeded", 60, 60, 0)
    tax_ids = [c["cnpj_cliente"] for c in sandbox_state(server)["clientes"]]
    assert len(tax_ids) == 60 and len(set(tax_ids)) == 60
    assert db_session.scalar(select(Binding).where(Binding.state != "bound")) is None
